"""The io stage, below everything that reads or writes a file of cnnkit's: bounded reading
of descriptions (bounded.py) and the run directory, the one type that knows a run's files
(rundir.py). Beside cnnkit/fsutil.py (atomic writes), which it uses."""

"""`python -m cnnkit.distributed.worker`: one rank of `cnnkit.run(spec, nproc=N)`.

The job file (its path in the environment, CNNKIT_RANK_JOB, set by launch.py) holds the spec; rank 0 leaves the RunResult's parts beside it (launch.py reads
them back) or, for a mistake in what was asked, its one-line error. Exit codes: 0 done, 2 the
run's own error (rank 0 wrote it), 3 another rank died; a bug keeps its traceback (exit 1).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cnnkit.distributed import PeerLost
from cnnkit.distributed.launch import ERROR, EXIT_ERROR, EXIT_PEER_LOST, JOB_ENV, MODEL, RESULT
from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_write_json


def main() -> int:
    from cnnkit.distributed.rank import _jsonable
    from cnnkit.runs.run import run
    from cnnkit.runs.spec import RunSpec

    job_file = Path(os.environ[JOB_ENV])
    job = json.loads(job_file.read_text())
    here, rank = job_file.parent, int(os.environ["RANK"])
    try:
        result = run(RunSpec.from_dict(job["spec"]), resume=job["resume"],
                     command=job["command"])
    except PeerLost:
        return EXIT_PEER_LOST  # the agent reports the rank that died
    except CnnkitError as e:
        if rank == 0:
            atomic_write_json(here / ERROR, {"error": str(e), "option": e.option,
                                             "value": _jsonable(e.value)})
        return EXIT_ERROR
    if rank == 0:
        result.model.save(here / MODEL)
        atomic_write_json(here / RESULT, {
            "spec": result.spec.to_dict(), "metrics": result.metrics, "history": result.history,
            "report": result.report,
            "run_dir": str(result.run_dir) if result.run_dir is not None else None})
    return 0


if __name__ == "__main__":
    code = main()
    # Out without the interpreter's teardown: the run is saved and the process group closed,
    # and gloo's threads, destroyed during it, once aborted a finished rank (SIGABRT,
    # "terminate called without an active exception"), failing a run that had succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

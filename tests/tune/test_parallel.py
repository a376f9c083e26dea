"""Several workers on one study: `--jobs 2` on the study's journal file, and workers on a real
PostgreSQL server (as on several machines), each grid point run exactly once; a worker that
dies has its trial re-queued after its heartbeat stops, and a slow live one is left alone."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cnnkit.cli import main
from _child import wait_for_line
from _tune_helpers import cnnkit_child, pause_in_trial, write_space

GRID = {"lr": [0.01, 0.02, 0.03], "batch_size": [64, 128]}
POINTS = sorted((lr, bs) for lr in GRID["lr"] for bs in GRID["batch_size"])


def _points(trials):
    return sorted((t.params["lr"], t.params["batch_size"]) for t in trials)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _midway(run: Path) -> bool:
    """A trial with an epoch saved and at least two of its four still to run."""
    try:
        return json.loads((run / "state" / "state.json").read_text())["epoch"] <= 2 \
            and not (run / "metrics.json").exists()
    except (OSError, ValueError, KeyError):  # not written yet, or being replaced
        return False


def test_jobs_2_share_the_journal_survive_kill_9_and_run_each_grid_point_once(tmp_path):
    """--jobs 2: the parent holds the study, its two workers are its children and die with it;
    the same command then finishes the grid, continuing the interrupted trials' runs."""
    grid = {"lr": [0.01, 0.02], "batch_size": [64, 128]}
    space = write_space(tmp_path / "space.yaml", grid, base={"epochs": 4})
    out = tmp_path / "study"
    argv = ["tune", str(space), "--sampler", "grid", "--jobs", "2", "--pruner", "none",
            "--quiet", "--out", str(out)]
    parent = cnnkit_child(*argv)
    busy: set[str] = set()
    deadline = time.monotonic() + 240
    while not busy and parent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # a trial with an epoch saved and not yet finished
        busy = {d.name for d in (out / "trials").glob("*") if _midway(d)}
    workers = _children(parent.pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert busy and len(workers) == 2, parent.stderr.read().decode()
    for _ in range(100):  # the kernel delivers their PDEATHSIG at once; reaping takes a moment
        if not any(map(_alive, workers)):
            break
        time.sleep(0.05)
    assert not any(map(_alive, workers))  # no orphan worker goes on writing to the study
    # a trial seen midway may still have finished before the kill landed (a loaded machine):
    # only the ones left unfinished have something to continue
    busy = {name for name in busy if not (out / "trials" / name / "metrics.json").exists()}

    def rows(run):  # without the time column, which no two runs share
        return [line.rsplit(",", 1)[0] for line in (run / "history.csv").read_text().splitlines()]

    before = {name: rows(out / "trials" / name) for name in busy}

    assert main(argv) == 0
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    trials = optuna.load_study(study_name="study", storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert _points(complete) == [(0.01, 64), (0.01, 128), (0.02, 64), (0.02, 128)]  # once each
    assert all(t.state == TrialState.FAIL for t in trials if t not in complete)
    assert os.getpid() not in {t.user_attrs["worker"]["pid"] for t in complete}  # children ran them
    for name in busy:  # continued from their last saved epoch, not from scratch
        run = out / "trials" / name
        history = rows(run)  # (an epoch cut between its history row and its state is redone)
        assert len(history) == 5 and history[:len(before[name])] == before[name]
        assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1


def test_workers_on_postgresql_run_each_grid_point_once(tmp_path, postgres_url):
    space = write_space(tmp_path / "space.yaml", GRID, base={"epochs": 1})
    common = ["tune", str(space), "--sampler", "grid", "--pruner", "none", "--quiet",
              "--storage", postgres_url, "--study", "together"]
    a = cnnkit_child(*common, "--out", tmp_path / "a")
    b = cnnkit_child(*common, "--out", tmp_path / "b")
    for p in (a, b):
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    study = optuna.load_study(study_name="together", storage=postgres_url.replace(
        "postgresql://", "postgresql+psycopg://"))
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials) and _points(trials) == POINTS
    ran = {w: {d.name for d in (tmp_path / w / "trials").iterdir()}
           if (tmp_path / w / "trials").is_dir() else set() for w in ("a", "b")}
    assert not ran["a"] & ran["b"] and len(ran["a"] | ran["b"]) == 6  # together, once each
    print(f"worker a ran {len(ran['a'])} trials, worker b {len(ran['b'])}")


def test_a_dead_workers_trial_is_requeued_after_its_heartbeat_and_resumed(tmp_path,
                                                                         postgres_url):
    space = write_space(tmp_path / "space.yaml", {"lr": [0.01, 0.02, 0.03]},
                        base={"epochs": 2})
    common = ["tune", str(space), "--sampler", "grid", "--pruner", "none", "--quiet",
              "--storage", postgres_url, "--study", "heartbeat", "--heartbeat", "1"]
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    slow = cnnkit_child(*common, "--out", tmp_path / "a",
                        script=pause_in_trial("trials/0000", 1))
    try:
        assert wait_for_line(slow, "paused"), slow.stderr.read().decode()
        # another worker runs the rest; trial 0 is slow but alive (beating): never failed
        other = cnnkit_child(*common, "--out", tmp_path / "b")
        assert other.wait(timeout=300) == 0, other.stderr.read().decode()
        states = {t.number: t.state for t in optuna.load_study(
            study_name="heartbeat", storage=url).get_trials()}
        assert states == {0: TrialState.RUNNING, 1: TrialState.COMPLETE, 2: TrialState.COMPLETE}
    finally:
        os.kill(slow.pid, signal.SIGKILL)
        slow.wait()
    time.sleep(4)  # past the grace period (3 heartbeats of 1 s) of the dead worker's trial
    again = cnnkit_child(*common, "--out", tmp_path / "a")
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    trials = optuna.load_study(study_name="heartbeat", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[3].system_attrs["failed_trial"] == 0 and trials[3].params == trials[0].params
    run = tmp_path / "a" / "trials" / "0000"  # resumed from its state: epoch 1 not redone
    assert len((run / "history.csv").read_text().splitlines()) == 3
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1


def test_two_workers_asking_for_the_last_trial_run_it_once():
    """Both see one trial left and both ask: the later trial is closed unrun and left out, so
    the study runs its budget exactly (Optuna's own n_trials per worker would run it twice)."""
    from cnnkit.search.live import Live
    from cnnkit.search.worker import _beyond_budget, over_budget

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    done = study.ask()
    study.tell(done, 0.5)  # one of a budget of 2 used
    first, second = study.ask(), study.ask()  # two workers, at once
    assert not _beyond_budget(study, first, 2)
    assert _beyond_budget(study, second, 2)
    closed = study.get_trials(deepcopy=False)[second.number]
    assert closed.state == TrialState.FAIL and over_budget(closed)
    study.tell(first, 0.6)
    assert [r["number"] for r in Live(study, None, enabled=False).rows()] == [0, 1]


def test_jobs_2_run_exactly_the_trials_asked_for(tmp_path):
    space = write_space(tmp_path / "space.yaml", {"lr": {"log_uniform": [1e-3, 1e-1]}},
                        base={"epochs": 1})
    out = tmp_path / "study"
    assert main(["tune", str(space), "--sampler", "random", "--trials", "3", "--jobs", "2",
                 "--pruner", "none", "--quiet", "--out", str(out)]) in (0, None)
    rows = (out / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(",COMPLETE," in r for r in rows)

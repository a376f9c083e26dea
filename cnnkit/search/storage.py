"""Where a study lives: Optuna's own storages, with heartbeats on every one of them.

    (default)              STUDY_DIR/study.journal: Optuna's journal file, which several local
                           worker processes append to safely (one write per line, under its
                           lock file)
    journal:PATH           a journal file elsewhere (PATH.journal also works)
    sqlite:///PATH         one worker only: SQLite locks the whole file per write, and Optuna
                           itself warns against it for parallel workers
    postgresql://...       workers on several machines join one study

A worker that dies (kill -9, a lost machine) leaves its trial RUNNING in the storage forever,
unless something notices. Every storage here records a heartbeat per running trial from a
thread of the worker (so a slow trial stays alive however long an epoch takes), and a trial
silent for `grace` seconds is failed and re-queued, with its parameters, by Optuna's own
RetryHeartbeatStaleTrialCallback: the retry continues the original trial's run directory.
Optuna's RDBStorage has heartbeats; its JournalStorage does not, so `HeartbeatJournalStorage`
adds them, as a trial system attribute written to the journal.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from cnnkit.errors import CnnkitError

JOURNAL = "study.journal"
HEARTBEAT_S = 10.0
GRACE_FACTOR = 3  # a trial silent for 3 heartbeats is taken for dead
_BEAT = "cnnkit:heartbeat"


def check_url(url: str | None, jobs: int) -> None:
    """Refuse what cannot work, before anything is written."""
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        return
    if url.startswith("sqlite:"):
        if jobs > 1:
            raise CnnkitError(f"--storage {redacted(url)} cannot be shared by --jobs {jobs} "
                              "workers: SQLite locks the whole file for every write and "
                              "Optuna warns against it for parallel workers; valid: leave "
                              "--storage out (a journal file beside the study, safe for many "
                              "local workers) or postgresql://...")
        return
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        return
    raise CnnkitError(f"unknown --storage {redacted(url)!r}; valid: journal:PATH, sqlite:///PATH "
                      "(one worker), postgresql://USER@HOST:PORT/DB, or none (a journal file "
                      "beside the study)")


def open_storage(url: str | None, study_dir: Path, heartbeat: float = HEARTBEAT_S):
    """The Optuna storage `url` names (None: the study's own journal file), heartbeats on."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from cnnkit.search.worker import quiet_optuna

    quiet_optuna()
    retry = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = (Path(study_dir) / JOURNAL if url is None
                else Path(url[len("journal:"):] if url.startswith("journal:") else url))
        return HeartbeatJournalStorage(_journal_backend(path), heartbeat, retry)
    if url.startswith("postgres:"):
        url = "postgresql:" + url[len("postgres:"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]  # psycopg 3, not psycopg2
    kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}
    for attempt in range(10):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=max(1, round(heartbeat)),
                grace_period=max(2, round(heartbeat * GRACE_FACTOR)),
                heartbeat_stale_trial_callback=retry)
        except Exception as e:  # sqlalchemy's OperationalError and friends, in one line
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            reason = reason[0] if reason else type(e).__name__
            # workers started together all create Optuna's tables on a new database: all but
            # one lose that race (a duplicate key in the catalog), and then find them made
            if ("duplicate key" in reason or "already exists" in reason) and attempt < 9:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise CnnkitError(f"cannot reach --storage {redacted(url)}: {reason}") from None


def redacted(url: str | None) -> str | None:
    """The URL without its password (`user:***@`, `password=***`): what messages show and
    every file a study writes holds. The URL itself is given again to resume (find_url)."""
    import re

    if url is None:
        return None
    url = re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


STORAGE_ENV = "CNNKIT_STORAGE"  # the storage URL with its password, for a resumed study


def find_url(saved: str | None, given: str | None) -> str | None:
    """The storage URL of a study whose study.json holds `saved` (redacted): `saved` itself
    where it held no secret, else the URL given again (--storage, or $CNNKIT_STORAGE), which
    must be the same URL once redacted."""
    import os

    if saved is None or "***" not in saved:  # nothing was taken out of it
        if given is not None and given != saved:
            raise CnnkitError(f"--storage {redacted(given)} is not the study's own storage "
                              f"({saved or 'its journal file'}); resume it without --storage")
        return saved
    for url, where in ((given, "--storage"), (os.environ.get(STORAGE_ENV), f"${STORAGE_ENV}")):
        if url:
            if redacted(url) != saved:
                raise CnnkitError(f"{where} {redacted(url)} is not the study's own storage "
                                  f"({saved}); valid: that URL with its password")
            return url
    raise CnnkitError(f"the study's storage {saved} is kept without its password; give the "
                      f"whole URL again: --storage URL with --resume, or ${STORAGE_ENV}=URL")


def repair_journal(study_dir: Path) -> None:
    """Under the study's lock (no other process can be writing): what a kill -9 in the middle of
    a write left, an incomplete last line or the journal's lock file, is removed."""
    path = Path(study_dir) / JOURNAL
    lock = Path(str(path) + ".lock")
    if lock.is_symlink() or lock.exists():
        lock.unlink()
    if path.is_file() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)


def fail_orphans(study) -> list[int]:
    """Fail and re-queue every RUNNING trial now: only for a storage no live worker can hold
    (the study's own journal, under the study's lock). A trial failed by a dead worker whose
    copy was never queued (a kill between the two writes) is queued now too."""
    from optuna.trial import TrialState

    storage = study._storage
    retry = storage.get_heartbeat_stale_trial_callback()
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beyond = t.system_attrs.get("cnnkit:over_budget")  # killed while closing it unrun
        if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL) and not beyond:
            numbers.append(t.number)
            retry(study, storage.get_trial(t._trial_id))
    trials = study.get_trials(deepcopy=False)
    covered = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        if (t.state == TrialState.FAIL and "error" not in t.user_attrs and t.number not in covered
                and not t.system_attrs.get("cnnkit:over_budget")):
            numbers.append(t.number)
            retry(study, storage.get_trial(t._trial_id))
    return sorted(numbers)


def fail_stale(study) -> None:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Heartbeat:
    """One thread per worker that beats, every interval, for the trial the worker is running
    (as Optuna's own optimize loop does; ask-and-tell has none):

        with Heartbeat(storage) as heart:
            with heart.beating(trial_id):
                ...  # however long the trial takes, its heartbeat goes on
    """

    def __init__(self, storage):
        from optuna.storages._heartbeat import is_heartbeat_enabled

        self.storage = storage
        self.enabled = is_heartbeat_enabled(storage)  # in memory: nobody else to tell
        self.interval = storage.get_heartbeat_interval() if self.enabled else None
        self.trial_id = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # a storage hiccup, or the trial just ended: beat again later
                pass

    @contextlib.contextmanager
    def beating(self, trial_id: int):
        if self.enabled and not getattr(self.storage, "beats_from_start", False):
            self.storage.record_heartbeat(trial_id)  # RDB: a trial without one never expires
        self.trial_id = trial_id
        try:
            yield
        finally:
            self.trial_id = None

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()


def requeue(study, trial_id: int) -> None:
    """Fail a trial this worker is giving up (Ctrl-C) and queue its parameters again at once."""
    from optuna.trial import TrialState

    storage = study._storage
    if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
        retry = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
        if retry is not None:
            retry(study, storage.get_trial(trial_id))


def _journal_backend(path: Path):
    """Optuna's JournalFileBackend (its format, its lock file), without an fsync per line.

    An fsync guards against a power cut, not against kill -9: what a killed process wrote is in
    the page cache, and the next process reads it. Each trial writes about six lines, and six
    fsyncs cost more than the whole search's bookkeeping besides (bench/bench_tune.py). After a
    power cut the journal may miss its last lines: their trials are then drawn again with the
    same parameters (the sampler is seeded per trial), and their run directories, complete or
    not, are found and continued, not trained again."""
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class _Backend(JournalFileBackend):
        def append_logs(self, logs):
            with get_lock_file(self._lock):
                text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
                with open(self._file_path, "ab") as f:
                    f.write(text.encode("utf-8"))

    return _Backend(str(path))


def _heartbeat_journal_class():
    from optuna.storages.journal import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class _HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Optuna's JournalStorage with heartbeats: a trial system attribute holding the time of
        its worker's last beat (wall clock: the workers share the machine, and its journal)."""

        def __init__(self, backend, heartbeat: float, callback):
            super().__init__(backend)
            self._heartbeat, self._callback = float(heartbeat), callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, _BEAT, time.time())

        beats_from_start = True  # a trial's start counts as its first beat: one write less

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, grace = time.time(), self._heartbeat * GRACE_FACTOR

            def last_beat(t) -> float:
                beat = t.system_attrs.get(_BEAT)
                return beat if beat is not None else t.datetime_start.timestamp()

            return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False,
                                                             states=(TrialState.RUNNING,))
                    if now - last_beat(t) > grace]

        def get_heartbeat_interval(self) -> float:
            return self._heartbeat

        def get_heartbeat_stale_trial_callback(self):
            return self._callback

    return _HeartbeatJournalStorage


def HeartbeatJournalStorage(backend, heartbeat: float, callback):
    return _heartbeat_journal_class()(backend, heartbeat, callback)

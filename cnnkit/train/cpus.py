"""The CPUs a process may use and how busy they are: the ground `--threads auto|N` stands on.

`plan_threads` turns `--threads`, `CNNKIT_THREADS` and `OMP_NUM_THREADS` into a ThreadPlan:
fixed, or auto over the cores this process may use (its affinity mask, hyperthread siblings
once, capped by its cgroup's CPU quota: a container with `--cpus 1.5` gets 1), divided by the
processes on this machine. An `OMP_NUM_THREADS` the user set is honoured as a fixed count
(torchrun's own OMP_NUM_THREADS=1 is not: it is torchrun's default, not a choice).
`IdleMeter` reads /proc/stat for the other CPUs; `settle_threads` uses it for work that runs
once (evaluate, predict, a server's start). How a training run measures and changes its count
as it goes is cnnkit.train.threads.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cnnkit.errors import CnnkitError


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 cpu.max or v1 cfs quota), or
    None where there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def physical_cores(cpus, root: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many physical cores the logical CPUs `cpus` are on (hyperthread siblings count
    once, as torch's own default does); len(cpus) where the topology cannot be read."""
    cores = set()
    for cpu in cpus:
        topo = root / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(),
                       (topo / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def available_cpus() -> int:
    """Cores this process may use: its affinity mask (hyperthread siblings once), capped by its
    cgroup's quota."""
    try:
        cpus = physical_cores(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return max(1, cpus)


def check_count(option: str, value: int, cpus: int | None = None, unit: str = "CPUs") -> int:
    """`value` processes or threads asked for, refused in one line past the CPUs this process
    may use (or `cpus` where something else bounds it, such as GPUs). Refused, not capped: a
    count the user chose changes what runs (a batch split, a study's workers), so running
    another one without being asked would not be the run asked for; more than the cores only
    queues for them (and `--threads 500` made 502 threads)."""
    cpus = available_cpus() if cpus is None else cpus
    if value > cpus:
        raise CnnkitError(f"{option}={value} is more than this machine runs at once: "
                          f"{cpus} {unit} this process may use; valid: 1 to {cpus}",
                          option, value)
    return value


def under_torchrun(env=os.environ) -> bool:
    return "TORCHELASTIC_RUN_ID" in env or "LOCAL_WORLD_SIZE" in env


@dataclass
class ThreadPlan:
    threads: int  # threads to start with (per process)
    policy: str  # "auto" (measured, may change) or "fixed"
    reason: str  # where the number comes from, for the log and config.json
    warning: str | None = None  # processes x threads above the CPUs
    cpus: int = 1  # CPUs this process may use
    procs: int = 1  # processes on this machine sharing them

    @property
    def adaptive(self) -> bool:
        return self.policy == "auto" and self.threads > 1

    def to_dict(self) -> dict:
        return {"policy": self.policy, "threads": self.threads, "cpus": self.cpus,
                "processes": self.procs, "reason": self.reason}


def parse_threads(value, option: str = "threads"):
    """'auto' / None / an integer >= 1 (also as a string); anything else is one clear error."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool):
        raise CnnkitError(f"{option} must be 'auto' or an integer >= 1; got {value!r}",
                          option=option)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = None
    if n is None or n < 1 or (isinstance(value, float) and value != n):
        raise CnnkitError(f"{option} must be 'auto' or an integer >= 1; got {value!r}",
                          option=option)
    return n


def plan_threads(requested=None, procs_per_machine: int = 1, env=os.environ) -> ThreadPlan:
    """The thread plan for one process of `procs_per_machine` on this machine: `requested`
    ('auto', N, or None for the default: CNNKIT_THREADS, then a user's OMP_NUM_THREADS, then
    auto)."""
    cpus, procs = available_cpus(), max(1, int(procs_per_machine))
    source = "--threads"
    if requested is None and env.get("CNNKIT_THREADS"):
        requested, source = parse_threads(env["CNNKIT_THREADS"], "CNNKIT_THREADS"), \
            "CNNKIT_THREADS"
    omp = env.get("OMP_NUM_THREADS")
    if requested is None and omp and not (under_torchrun(env) and omp == "1"):
        requested, source = parse_threads(omp, "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    requested = parse_threads(requested)
    share = f"{cpus} CPU{'s' * (cpus != 1)}" + (f" / {procs} processes" if procs > 1 else "")
    if requested is None or requested == "auto":
        n = max(1, cpus // procs)
        why = f"auto: {share}" + (", measured as it runs" if n > 1 else "")
        warning = None
        if procs > cpus:
            warning = (f"{procs} processes on {cpus} CPU{'s' * (cpus != 1)}: they will slow each "
                       f"other down; use at most {cpus} (--nproc)")
        return ThreadPlan(n, "auto", why, warning, cpus, procs)
    warning = None
    if requested * procs > cpus:
        warning = (f"{procs} process{'es' * (procs != 1)} x {requested} threads = "
                   f"{requested * procs} threads on {cpus} CPU{'s' * (cpus != 1)}: oversubscribed "
                   f"threads wait on each other; try --threads {max(1, cpus // procs)}")
    return ThreadPlan(requested, "fixed", f"{source} {requested}", warning, cpus, procs)


def caller_threads() -> ThreadPlan:
    """The plan of a fit cnnkit did not start (a notebook's, a library user's): torch's thread
    count as the caller has it, fixed, so their process-wide setting is never changed."""
    import torch

    return ThreadPlan(torch.get_num_threads(), "fixed", "the caller's (torch.get_num_threads())",
                      cpus=available_cpus())


def settle_threads(requested=None, look_s: float = 0.05) -> tuple[int, str]:
    """(threads, why) for work that runs once rather than step after step (evaluate, predict,
    a server's start): the plan, and with auto, fewer threads where the idle meter sees other
    programs holding CPUs during `look_s` (this process idle meanwhile)."""
    plan = plan_threads(requested)
    if not plan.adaptive:
        return plan.threads, plan.reason
    meter = IdleMeter()
    meter.start()
    time.sleep(look_s)
    idle = meter.idle()
    if idle is None:
        return plan.threads, plan.reason
    n = max(1, min(plan.threads, math.floor(idle + 0.3)))
    return n, f"auto: {idle:.1f} of {plan.cpus} CPUs idle"


def set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def kept_threads():
    """Put torch's thread count back as it was: a run chooses its own, the caller keeps theirs."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        set_threads(before)


class IdleMeter:
    """How many of this process's CPUs stood idle since `start()`, from /proc/stat (idle and
    iowait count as idle; a VM's steal time, the host's other guests, as busy). It is how auto
    sees another program without paying for a slow step: while the probe runs on one thread,
    the other CPUs should be idle; and while training runs on one, they show when the program
    has gone. `idle()` is None where /proc/stat cannot be read (then timing alone decides)."""

    def __init__(self, cpus=None, stat: Path = Path("/proc/stat")):
        self.stat = stat
        try:
            self.cpus = {f"cpu{c}" for c in (cpus if cpus is not None
                                                else os.sched_getaffinity(0))}
        except (AttributeError, OSError):
            self.cpus = set()
        self._start = None

    def _read(self):
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        idle = total = 0
        for line in lines:
            parts = line.split()
            if parts and parts[0] in self.cpus:
                v = [int(x) for x in parts[1:9]]
                idle += v[3] + v[4]
                total += sum(v)
        return (idle, total) if total else None

    def start(self) -> None:
        self._start = self._read()

    def idle(self) -> float | None:
        now = self._read()
        if self._start is None or now is None or now[1] <= self._start[1]:
            return None
        return len(self.cpus) * (now[0] - self._start[0]) / (now[1] - self._start[1])

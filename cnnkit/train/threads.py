"""How many CPU threads torch uses: `--threads auto|N` (default auto), chosen by measurement.

Why a policy at all: torch's default is one OpenMP thread per core, and on a learner's 2-core
laptop with one core busy (a browser, an IDE, another run) that collapses. Each parallel region
ends at a barrier, the thread that shares its core with the other program is descheduled for
whole time slices, and the free thread spins waiting for it: an epoch then takes several times
longer on 2 threads than on 1 (OMP_WAIT_POLICY=PASSIVE helps only part of the way, and costs
quiet speed), while on a quiet host 2 threads are clearly faster than 1 (bench/README.md, "Threads
under load"). No static rule knows which case it is in, so `auto`:

1. takes the cores this process may use, shared by the processes on this machine
   (`plan_threads`, cnnkit.train.cpus);
2. starts on one thread, and times its first real steps while reading /proc/stat for the other
   CPUs (`IdleMeter`): busy, it stays on one thread without ever trying a slow step; idle, a few
   probe steps on a scratch copy of the model (`training_probe`) with all the threads decide
   (more threads only when clearly faster);
3. on more threads, drops to one when a window of steps slows down by half, and goes straight
   back when the next real steps on one thread are slower still (the whole host slowed, a VM's
   neighbours, which no /proc/stat shows: more threads are still the faster way); on one thread,
   looks at the meter every 2 s and probes upward when the other CPUs are idle again (backing
   off where a small model gains nothing from more threads even then: 3 s after the start's
   probe, which may have met a slow moment, then 15 s, doubling).

The probe steps never touch the model being trained (a copy, the random state forked), so a
run's numbers depend only on the thread counts its steps ran with. Those change the last digits
(reductions are split per thread), so a run records the counts it used (metrics.json
"threads"; state.json the count to resume with), and `--threads N` fixes them for bit-exact
reruns whatever the load.
`CNNKIT_THREADS=N|auto` sets the default for every command (OMP_NUM_THREADS: cnnkit.train.cpus).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

# the CPUs and the plan (cnnkit.train.cpus), importable from here as before
from cnnkit.train.cpus import (IdleMeter, ThreadPlan, available_cpus, caller_threads,  # noqa: F401
                               cgroup_cpu_limit, kept_threads, parse_threads, physical_cores,
                               plan_threads, set_threads, settle_threads, under_torchrun)

FASTER = 0.85  # more threads must take < 85% of one thread's time to be kept
SLOWDOWN = 1.5  # steps on more threads this much slower than before: drop to one
WINDOW = 5  # steps in the rolling median the watchdog compares with the probe's
PROBE_STEPS = 4  # timed steps per thread count (after one untimed warm-up step)
LOOK_S = 2.0  # on one thread: read the idle meter this often
RECHECK_S = (15.0, 600.0)  # after a probe that found more threads slower with the CPUs idle
#                            (a model too small to gain): wait 15 s, doubling up to 10 min
START_RECHECK_S = 3.0  # after the start's probe found no gain: one look sooner, since a single
#                        probe in a slow moment of the host would otherwise keep a model that
#                        gains on one thread for 15 s, most of a short run (bench/README.md)


@dataclass
class ThreadGovernor:
    """Applies a ThreadPlan to a loop of similar steps (training batches). `probe(n)` must run
    one representative step with n threads set and leave the real training state untouched;
    `step(seconds, size)` is told each real step's wall time and batch size. The policy: the
    module's note."""
    plan: ThreadPlan
    probe: object = None  # callable(n) -> None, or None: no measuring (the plan's count)
    probe_size: int = 1  # samples in one probe step
    now: object = time.perf_counter
    meter: object = None  # IdleMeter (made at start); a test gives its own
    tell: object = None  # callable(line): told when the count drops below the plan's
    current: int = 0
    steps: dict = field(default_factory=dict)  # threads -> real steps run with them
    changes: list = field(default_factory=list)  # [{"epoch", "step", "threads", "why"}]
    probes: list = field(default_factory=list)  # [{"epoch", "step", "why", "s_per_sample"}]
    _window: list = field(default_factory=list)  # recent real steps, s per sample
    _reference: float | None = None  # s per sample of real steps on more threads
    _pending: str | None = None  # "start": the first steps on one thread decide
    _backoff: float = RECHECK_S[0]  # after a probe that found more threads slower anyway
    _next_look: float = 0.0  # on one thread: when to read the idle meter again
    _not_before: float = 0.0  # on one thread: no upward probe before this
    _since_change: int = 0
    _gained: bool = False  # a probe has found more threads clearly faster in this run
    _slowed: float | None = None  # s per sample of the slowed-down steps that dropped to one

    @property
    def measuring(self) -> bool:
        return self.plan.adaptive and self.probe is not None

    def start(self, epoch: int = 0, at: int | None = None) -> int:
        """Set the starting thread count; returns it. `at`: the count a resumed run had when
        it stopped (so that it goes on as the uninterrupted run would)."""
        if not self.measuring:
            self.current = self.plan.threads
        else:
            if self.meter is None:
                self.meter = IdleMeter()
            self.current = min(at or 1, self.plan.threads)
            self._pending = "start" if self.current == 1 else None
            self.meter.start()
            self._next_look = self.now() + LOOK_S
        set_threads(self.current)
        return self.current

    def _timed(self, n: int) -> float:
        t0 = self.now()
        self.probe(n)
        return self.now() - t0

    def _probe_many(self, many: int, one: float) -> float:
        """Seconds per sample with `many` threads, after a warm-up step (a new thread count's
        first step pays for its set-up), stopping at the first step that is clearly slower than
        one thread's `one` (s per sample): under load such a step costs ten of one thread's."""
        set_threads(many)
        size, times = self.probe_size, []
        for k in range(PROBE_STEPS + 1):
            t = self._timed(many) / size
            if t > (3 if k == 0 else 2) * one:
                times.append(t)
                break
            if k:
                times.append(t)
        return statistics.median(times)

    def _switch(self, n: int, epoch: int, step: int, why: str) -> None:
        if n != self.current or why.startswith("start"):
            self.changes.append({"epoch": epoch, "step": step, "threads": n, "why": why})
            if n < self.plan.threads and self.tell is not None:
                self.tell(f"Threads: {n} of {self.plan.threads} ({why})")
        self.current = n
        set_threads(n)
        self._window.clear()
        self._since_change = 0
        self._next_look = self.now() + LOOK_S
        self.meter.start()

    def _try_more(self, epoch: int, step: int, why: str) -> None:
        """On one thread: is `many` clearly faster now? The meter first, then a probe."""
        many = self.plan.threads
        one = statistics.median(self._window)
        idle = self.meter.idle()
        if idle is not None and idle < 0.7 * (many - 1):
            if why == "start":
                self._switch(1, epoch, step, f"start: the other CPUs were busy ({idle:.1f} of "
                                             f"{many - 1} idle), 1 thread {one * 1e6:.1f} "
                                             "us/sample")
            self.meter.start()
            self._next_look = self.now() + LOOK_S
            return
        t_many = self._probe_many(many, one)
        self.probes.append({"epoch": epoch, "step": step, "why": why,
                            "s_per_sample": {str(many): t_many, "1": one}})
        text = f"{why}: {many} threads {t_many * 1e6:.1f} us/sample, 1 thread {one * 1e6:.1f}"
        if t_many < FASTER * one:
            self._backoff = RECHECK_S[0]
            self._gained = True
            self._switch(many, epoch, step, text + " us/sample")
            # the watchdog's yardstick: the next real steps (batch gathering and all), not the
            # probe's, which has none of that and would make every real step look slow
            self._reference = None
        elif self._gained:  # this model did gain from more threads with these CPUs idle: the
            # probe fell in a slow moment of the host (its other guests), not a small model's
            # limit; look again at the next reading of the meter rather than backing off
            self._switch(1, epoch, step, text + " us/sample")
        else:  # slower even with the CPUs idle (a small model): look again later, and later
            if why != "start":
                self._backoff = min(RECHECK_S[1], self._backoff * 2)
            self._switch(1, epoch, step, text + " us/sample")
            self._not_before = self.now() + (START_RECHECK_S if why == "start" else
                                             self._backoff)

    def step(self, seconds: float, size: int, epoch: int = 0, index: int = 0) -> None:
        """One real step ran for `seconds` on `size` samples with the current threads."""
        self.steps[self.current] = self.steps.get(self.current, 0) + 1
        if not self.measuring or size <= 0:
            return
        self._since_change += 1
        if self._since_change == 1 and self._pending:
            return  # the first step pays for set-up: not timed
        self._window.append(seconds / size)
        if len(self._window) > WINDOW:
            del self._window[0]
        if self._pending:
            if len(self._window) >= PROBE_STEPS:
                self._pending = None
                self._try_more(epoch, index + 1, "start")
            return
        if self.current > 1:
            if self._reference is None and len(self._window) == WINDOW:
                self._reference = statistics.median(self._window)  # after a switch or resume
            elif self._reference is not None and len(self._window) == WINDOW \
                    and statistics.median(self._window) > SLOWDOWN * self._reference:
                slowed = statistics.median(self._window)
                self._switch(1, epoch, index + 1,
                             f"steps slowed down: {slowed * 1e6:.1f} us/sample on "
                             f"{self.current} threads, {self._reference * 1e6:.1f} before")
                self._slowed = slowed  # the next real steps on one thread say who slowed them
            return
        if self._slowed is not None:  # a trial: is one thread faster than the slowed steps?
            if self._since_change == 1:
                self._window.clear()  # a new thread count's first step pays for its set-up
                return
            if len(self._window) < PROBE_STEPS:
                return
            one, slowed, self._slowed = statistics.median(self._window), self._slowed, None
            if slowed < FASTER * one:  # the whole host slowed (its other guests), not one CPU:
                # more threads are still the faster way; their new pace is the yardstick
                self._switch(self.plan.threads, epoch, index + 1,
                             f"trial: 1 thread {one * 1e6:.1f} us/sample, {self.plan.threads} "
                             f"threads slowed down {slowed * 1e6:.1f}: the host slowed")
                self._reference = None
            return
        now = self.now()
        if now >= self._next_look and now >= self._not_before and self._window:
            self._try_more(epoch, index + 1, "recheck")

    def record(self) -> dict:
        """What metrics.json says about the threads: the plan, the counts used, the changes."""
        return {**self.plan.to_dict(), "used": {str(k): v for k, v in sorted(self.steps.items())},
                "changes": list(self.changes)}


def training_probe(net, autocast, loss_fn, xb, yb, make_optimizer=None):
    """probe(n) for a ThreadGovernor: one training step of a scratch copy of `net` on the batch
    (xb, yb): forward, backward and, with `make_optimizer(params)`, an optimizer step, under the
    random state forked (dropout draws leave the real run's generator alone). None where the
    network cannot be copied: the plan's count is kept."""
    import copy

    import torch

    try:
        scratch = copy.deepcopy(net)
    except Exception:  # noqa: BLE001 - a user's module that cannot be copied: no measuring
        return None
    scratch.train()
    optimizer = make_optimizer(scratch.parameters()) if make_optimizer else None

    def probe(n: int) -> None:
        with torch.random.fork_rng(devices=[]):
            with autocast():
                loss = loss_fn(scratch(xb), yb)
            scratch.zero_grad(set_to_none=True)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
    return probe


def start_fit_threads(trainer, loader, epoch: int) -> None:
    """Set a Trainer's thread count for one `fit`: a plan's warning said once; with auto, the
    probe made from a scratch copy of its network and its first training images."""
    from cnnkit.train.optim import make_optimizer

    gov, cfg = trainer.threads, trainer.config
    if gov.plan.warning:
        trainer.say(f"Warning: {gov.plan.warning}")
    n = min(len(loader.x), cfg.batch_size)
    if gov.plan.adaptive and gov.probe is None:
        import torch

        first = torch.arange(n)
        xb = trainer._input(loader.x.index_select(0, first).to(trainer.device))
        gov.probe = training_probe(
            trainer.model.net, trainer._autocast, trainer.loss_fn, xb,
            loader.y.index_select(0, first).to(trainer.device),
            lambda params: make_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum,
                                          cfg.nesterov, cfg.weight_decay,
                                          cfg.optimizer_options))
    gov.probe_size, gov.tell = n, trainer.say
    gov.start(epoch, at=trainer._resume_threads)

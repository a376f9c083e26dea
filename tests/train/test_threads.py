"""The thread policy (`--threads auto|N`, cnnkit.train.threads): what it starts from, how it
decides, that its measuring never changes a run's numbers, and that under a real competing
program it gives up the core that program holds."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.train import cpus as C
from cnnkit.train import threads as T
from cnnkit.train.threads import (ThreadGovernor, ThreadPlan, cgroup_cpu_limit, parse_threads,
                                  physical_cores, plan_threads)

DIGITS = dict(model="seed003-cnn", dataset="digits", epochs=2, batch_size=64, seed=5, verbose=0,
              artifacts="none")


# --- where the count starts ---------------------------------------------------------------------
def test_auto_uses_the_cpus_shared_by_the_processes_on_this_machine(monkeypatch):
    monkeypatch.setattr(C, "available_cpus", lambda: 8)
    assert plan_threads("auto", env={}).threads == 8
    plan = plan_threads("auto", procs_per_machine=4, env={})
    assert (plan.threads, plan.policy, plan.warning) == (2, "auto", None)
    assert plan_threads("auto", procs_per_machine=16, env={}).warning == (
        "16 processes on 8 CPUs: they will slow each other down; use at most 8 (--nproc)")


def test_a_fixed_count_is_kept_and_oversubscription_is_one_warning(monkeypatch):
    monkeypatch.setattr(C, "available_cpus", lambda: 2)
    plan = plan_threads(3, env={})
    assert (plan.threads, plan.policy, plan.adaptive) == (3, "fixed", False)
    assert plan.warning == ("1 process x 3 threads = 3 threads on 2 CPUs: oversubscribed threads "
                            "wait on each other; try --threads 2")
    assert plan_threads(2, procs_per_machine=2, env={}).warning.startswith(
        "2 processes x 2 threads = 4 threads on 2 CPUs")
    assert plan_threads(1, procs_per_machine=2, env={}).warning is None


def test_the_environment_sets_the_default_and_torchruns_own_one_thread_is_not_a_choice(
        monkeypatch):
    monkeypatch.setattr(C, "available_cpus", lambda: 4)
    assert plan_threads(None, env={"CNNKIT_THREADS": "3"}).to_dict()["reason"] == \
        "CNNKIT_THREADS 3"
    assert plan_threads(None, env={"CNNKIT_THREADS": "auto"}).policy == "auto"
    assert plan_threads(None, env={"OMP_NUM_THREADS": "1"}).threads == 1  # the user's choice
    torchrun = {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"}
    assert plan_threads(None, procs_per_machine=2, env=torchrun).threads == 2  # 4 cores / 2
    assert plan_threads(1, env={"CNNKIT_THREADS": "3"}).threads == 1  # the flag wins


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True, "0"])
def test_a_bad_thread_count_is_one_clear_error(bad):
    with pytest.raises(CnnkitError, match=r"threads must be 'auto' or an integer >= 1; got "):
        parse_threads(bad)
    assert parse_threads("2") == 2 and parse_threads("auto") == "auto"


def test_cli_bad_threads_is_one_line_exit_2(capsys):
    capsys.readouterr()
    assert main(["train", "--model", "seed003-cnn", "--dataset", "digits", "--threads", "0",
                 "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert err == "cnnkit: error: --threads must be 'auto' or an integer >= 1; got '0'\n"
    assert not os.path.exists("never")


def test_a_cgroup_quota_caps_the_count(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(v1) == 3.0


def test_hyperthread_siblings_count_once(tmp_path):
    for cpu, core in enumerate([0, 1, 0, 1]):  # 4 logical CPUs on 2 cores
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert physical_cores([0, 1, 2, 3], tmp_path) == 2
    assert physical_cores([0, 2], tmp_path) == 1
    assert physical_cores([0, 7], tmp_path) == 2  # unreadable topology: each CPU counts


# --- how it decides: a scripted machine, where a competing program comes and goes ----------------
class Machine:
    """A clock, an idle meter and a step whose cost depends on the threads and on whether
    another program holds the second core: quiet, 2 threads take 6 ms and 1 thread 10 ms;
    loaded, 2 threads take 60 ms (the barrier waits for the descheduled thread), 1 thread
    11 ms, and the second core is never idle."""
    def __init__(self, costs=None):
        self.t, self.loaded = 0.0, False
        self.costs = costs or {(False, 2): 6e-3, (False, 1): 10e-3, (True, 2): 60e-3,
                               (True, 1): 11e-3}
        self.slow_probe_steps = 0

    def now(self):
        return self.t

    def cost(self, n):
        return self.costs[(self.loaded, n)]

    def probe(self, n):
        self.t += self.cost(n)
        self.slow_probe_steps += self.loaded and n == 2

    def start(self):  # the idle meter
        pass

    def idle(self):
        return 0.0 if self.loaded else 1.0


def drive(gov, machine, steps, epoch=0, until=None):
    """`steps` real steps at the machine's costs; `until`: stop once on that many threads."""
    for i in range(steps):
        dt = machine.cost(gov.current)
        machine.t += dt
        gov.step(dt, 128, epoch, i)
        if gov.current == until:
            break


def governor(m, threads=2):
    return ThreadGovernor(ThreadPlan(threads, "auto", "auto: 2 CPUs", cpus=2), probe=m.probe,
                          probe_size=128, now=m.now, meter=m)


def quiet_run_on_two_threads(monkeypatch):
    """A machine and an auto governor that has started, found 2 threads faster and kept them."""
    m = Machine()
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    gov = governor(m)
    gov.start()
    drive(gov, m, 100)
    assert gov.current == 2
    return m, gov


def test_the_governor_drops_to_one_thread_under_load_and_comes_back(monkeypatch):
    m = Machine()
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    told = []
    gov = governor(m)
    gov.tell = told.append
    assert gov.start() == 1  # its first real steps time one thread
    drive(gov, m, 100)  # quiet: after them, a probe finds 2 threads clearly faster
    assert gov.current == 2 and gov.steps == {1: 1 + T.PROBE_STEPS, 2: 99 - T.PROBE_STEPS}
    assert gov.changes[0]["why"] == "start: 2 threads 46.9 us/sample, 1 thread 78.1 us/sample"
    assert told == []  # nothing to say while the run uses all it planned
    m.loaded = True  # a browser starts
    drive(gov, m, 30)
    assert gov.current == 1
    assert gov.changes[-1]["why"].startswith("steps slowed down: 468.8 us/sample on 2 threads")
    assert told == [f"Threads: 1 of 2 ({gov.changes[-1]['why']})"]
    assert gov.steps[2] - (99 - T.PROBE_STEPS) == T.WINDOW // 2 + 1  # the median turned slow
    drive(gov, m, 3000)  # 33 s still loaded: the meter says so every 2 s; nothing is probed
    assert gov.current == 1 and len(gov.probes) == 1 and m.slow_probe_steps == 0
    m.loaded = False  # the browser is closed
    drive(gov, m, 300)  # within the next look at the meter (2 s), back to 2 threads
    assert gov.current == 2 and gov.changes[-1]["why"].startswith("recheck: 2 threads")
    record = gov.record()
    assert record["policy"] == "auto" and set(record["used"]) == {"1", "2"}
    assert sum(record["used"].values()) == 100 + 30 + 3000 + 300


def test_a_slow_moment_of_the_host_does_not_keep_a_run_on_one_thread(monkeypatch):
    """The host's other guests slow every step for a while (the other CPU stays idle to this
    guest's meter): the watchdog drops to one thread, and the probes during the slow spell find
    2 threads no faster. This model did gain from 2 threads at the start, so it probes again at
    each reading of the meter (not after the 15 s back-off meant for models too small for 2
    threads) and is back on 2 threads within seconds of the spell's end."""
    m, gov = quiet_run_on_two_threads(monkeypatch)
    quiet = dict(m.costs)
    m.costs.update({(False, 2): 30e-3, (False, 1): 20e-3})  # a slow spell of the host
    drive(gov, m, 300)  # ~6 s of it
    assert gov.current == 1 and any(c["why"].startswith("steps slowed down") for c in gov.changes)
    rechecks = [p for p in gov.probes if p["why"] == "recheck"]
    assert len(rechecks) >= 2  # every ~2 s, not once per 15 s
    m.costs = quiet  # the spell ends
    t_end = m.t
    drive(gov, m, 1000, until=2)
    assert gov.current == 2 and m.t - t_end < T.LOOK_S + 0.5


def test_a_host_that_slows_both_counts_goes_back_to_two_threads_at_once(monkeypatch):
    """The whole host slows (a VM's neighbours: no CPU of this guest looks busy), 2 threads from
    6 to 15 ms a step and 1 thread from 10 to 20 ms. The watchdog drops to one thread; the next
    real steps there are slower still, so it goes straight back to 2, without waiting for the
    meter, and stays there while the spell lasts (its yardstick is now the slow pace)."""
    m, gov = quiet_run_on_two_threads(monkeypatch)
    m.costs.update({(False, 2): 15e-3, (False, 1): 20e-3})
    drive(gov, m, 400)  # ~6 s of the spell
    whys = [c["why"] for c in gov.changes]
    assert whys[-2].startswith("steps slowed down") and whys[-1].startswith("trial: 1 thread")
    assert gov.current == 2 and len(gov.changes) == 3  # one drop, one return: no seesaw
    assert gov.steps[1] <= 1 + T.PROBE_STEPS + 1 + T.PROBE_STEPS  # the start, then the trial


def test_real_steps_dearer_than_the_probe_are_not_a_slowdown(monkeypatch):
    """A real step also gathers and converts its batch, which the probe does not: the watchdog
    measures its yardstick on real steps, so a quiet run stays on 2 threads."""
    m = Machine()
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    gov = governor(m)
    gov.start()
    for i in range(2000):  # every real step costs 1.7x the probe's
        dt = 1.7 * m.cost(gov.current)
        m.t += dt
        gov.step(dt, 128, 0, i)
    assert gov.current == 2 and len(gov.changes) == 1 and gov.steps[2] == 2000 - 5


def test_under_load_from_the_start_no_slow_step_is_ever_tried(monkeypatch):
    m = Machine()
    m.loaded = True
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    told = []
    gov = governor(m)
    gov.tell = told.append
    gov.start()
    drive(gov, m, 2000)
    assert gov.steps == {1: 2000} and gov.probes == [] and m.slow_probe_steps == 0
    assert told == ["Threads: 1 of 2 (start: the other CPUs were busy (0.0 of 1 idle), 1 thread "
                    "85.9 us/sample)"]


def test_a_model_too_small_for_two_threads_stays_on_one_and_rechecks_rarely(monkeypatch):
    m = Machine({(False, 2): 12e-3, (False, 1): 10e-3})
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    gov = governor(m)
    gov.start()
    # 120 s on idle CPUs: upward probes at the start, ~3 s later (the start's probe may have
    # fallen in a slow moment), then 30 s and 60 s after that: ~33, ~93 s
    drive(gov, m, 12000)
    assert [p["why"] for p in gov.probes] == ["start"] + ["recheck"] * 3
    times = [p["step"] * 10e-3 for p in gov.probes]
    assert 2.5 < times[1] < 4.0 and 29 < times[2] - times[1] < 32
    assert gov.changes[0]["why"] == "start: 2 threads 93.7 us/sample, 1 thread 78.1 us/sample"
    assert gov.current == 1 and gov.steps == {1: 12000}


def test_a_start_probe_in_a_slow_moment_looks_again_within_seconds(monkeypatch):
    """The start's probe fell in a slow moment of the host (2 threads measured slower); the
    model does gain from 2 threads, so the next look, ~3 s on, moves it there (seen in a bench:
    a run that stayed on one thread for 15 s lost 9 s of its 20)."""
    m = Machine({(False, 2): 12e-3, (False, 1): 10e-3})  # the slow moment
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    gov = governor(m)
    gov.start()
    drive(gov, m, 20)
    assert gov.current == 1 and gov.probes[0]["why"] == "start"
    m.costs.update({(False, 2): 6e-3})  # the host is itself again: 2 threads clearly faster
    t0 = m.t
    drive(gov, m, 2000, until=2)
    assert gov.current == 2 and m.t - t0 < T.START_RECHECK_S + 0.5


def test_a_resumed_run_starts_on_the_count_it_stopped_with(monkeypatch):
    m = Machine()
    monkeypatch.setattr(T, "set_threads", lambda n: None)
    gov = governor(m)
    assert gov.start(at=2) == 2
    drive(gov, m, 50)
    assert gov.steps == {2: 50} and gov.probes == []
    m.loaded = True
    drive(gov, m, 10)  # its reference came from its own first steps: the slowdown is seen
    assert gov.current == 1


def test_a_fixed_count_never_measures(monkeypatch):
    m = Machine()
    calls = []
    monkeypatch.setattr(T, "set_threads", calls.append)
    gov = ThreadGovernor(ThreadPlan(2, "fixed", "--threads 2"), probe=m.probe, now=m.now)
    gov.start()
    m.loaded = True
    drive(gov, m, 200)
    assert calls == [2] and gov.current == 2 and gov.probes == [] and m.t == pytest.approx(12.0)


# --- real runs ------------------------------------------------------------------------------------
def _weights(result):
    return [p.detach().clone() for p in result.model.net.parameters()]


def test_measuring_does_not_change_the_runs_numbers(monkeypatch):
    """auto's probe steps run on a scratch copy with the random state forked: an auto run that
    probed 2 threads and kept one is the fixed 1-thread run to the last digit (dropout and
    batch norm included)."""
    monkeypatch.delenv("CNNKIT_THREADS", raising=False)
    monkeypatch.setattr(C, "available_cpus", lambda: 2)
    # force the decision, so that the comparison does not depend on this machine's load
    monkeypatch.setattr(T, "FASTER", 0.0)
    monkeypatch.setattr(T.IdleMeter, "idle", lambda self: None)  # timing alone decides
    spec = cnnkit.RunSpec(**DIGITS, threads="auto")
    auto = cnnkit.run(spec)
    record = auto.metrics["threads"]
    assert record["used"] == {"1": 2 * 23} and record["policy"] == "auto"
    assert record["changes"][0]["why"].startswith("start: 2 threads")
    fixed = cnnkit.run(spec.replace(threads=1))
    drop = lambda h: {k: v for k, v in h.items() if k != "time"}  # noqa: E731
    assert drop(fixed.history) == drop(auto.history)
    for a, b in zip(_weights(auto), _weights(fixed)):
        assert torch.equal(a, b)


def test_an_auto_run_repeats_itself_when_it_makes_the_same_choices(monkeypatch):
    monkeypatch.delenv("CNNKIT_THREADS", raising=False)
    monkeypatch.setattr(C, "available_cpus", lambda: 2)
    monkeypatch.setattr(T, "FASTER", 1e9)  # always 2 threads after the first steps
    monkeypatch.setattr(T, "SLOWDOWN", 1e9)  # and never back, whatever the load does
    monkeypatch.setattr(T.IdleMeter, "idle", lambda self: None)
    spec = cnnkit.RunSpec(**DIGITS, threads="auto")
    a, b = cnnkit.run(spec), cnnkit.run(spec)
    assert a.metrics["threads"]["used"] == {"1": 1 + T.PROBE_STEPS, "2": 46 - 1 - T.PROBE_STEPS}
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    for x, y in zip(_weights(a), _weights(b)):
        assert torch.equal(x, y)


def test_a_run_gives_the_caller_its_threads_back(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = cnnkit.run(cnnkit.RunSpec(**DIGITS, threads=2))
        assert r.metrics["threads"]["used"] == {"2": r.metrics["epochs_run"] * 23}  # 1437/64
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


CHILD = """
import json, sys
import cnnkit
spec = cnnkit.RunSpec(model="fast-cnn", dataset="digits", epochs=1, batch_size=128, seed=1,
                      verbose=2, artifacts="none")
print(json.dumps(cnnkit.run(spec).metrics["threads"]))
"""


def test_with_a_busy_program_on_one_of_its_two_cores_auto_trains_on_one_thread():
    """A real competitor: a busy loop pinned to one of the two CPUs the run may use. Two
    threads would wait at every barrier for the one sharing that core; auto must see it and
    train on one thread, and say so."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        pytest.fail("this test needs 2 CPUs (the project's machines have 2)", pytrace=False)
    env = {k: v for k, v in os.environ.items() if k not in ("CNNKIT_THREADS", "OMP_NUM_THREADS")}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {cpus[1]})
        child = subprocess.run(
            [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {set(cpus)!r})\n" + CHILD],
            capture_output=True, text=True, env=env, timeout=300)
    finally:
        busy.kill()
        busy.wait()
    assert child.returncode == 0, child.stderr
    record = json.loads(child.stdout.strip().splitlines()[-1])
    assert record["cpus"] == 2 and record["policy"] == "auto"
    assert record["used"].get("1", 0) > record["used"].get("2", 0), record
    assert "Threads: 1 of 2 (start: the other CPUs were busy" in child.stdout \
        or record["changes"][-1]["why"].startswith("steps slowed down"), child.stdout

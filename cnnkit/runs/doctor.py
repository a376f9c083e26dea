"""`cnnkit doctor RUN`: what went wrong in a run, each finding with a code, one line saying
what the figures show, and the next command to try.

    findings = diagnose(RunDir("runs/a"))     # [{"code", "message", "next"}, ...]; [] healthy

The same findings end `cnnkit train` and go into metrics.json ("doctor"), report.md and
report.html. They are read from the run directory alone (config.json, history.csv,
metrics.json); the two that need the images themselves (imbalanced classes, near-duplicates
across train and test) come from metrics.json's "data_checks", which the run wrote from its
own splits, or, for a run that has none, from the data loaded again.

Codes, in the order they are checked:
    diverged         the loss became nan/inf, or rose from the first epoch on: the rate is too high
    overfit          validation loss rising while training loss falls
    undertrained     still improving at the last epoch (or a single epoch)
    bn-unsettled     batch-norm moving statistics that too few steps cannot have settled
    train-test-gap   training accuracy well above test accuracy
    imbalanced       the largest class has at least 3x the images of the smallest
    duplicates       test images that are near-copies of training images
    preset-reshaped  a preset rebuilt for another image shape or class count
    threads-dropped  a busy machine made the thread governor train on fewer threads
"""
from __future__ import annotations

import math

from cnnkit.io.rundir import CONFIG, RunDir

CODES = ("diverged", "overfit", "undertrained", "bn-unsettled", "train-test-gap", "imbalanced",
         "duplicates", "preset-reshaped", "threads-dropped")
RISE = 0.05  # validation loss this far (relative) above its best: rising
STILL_IMPROVING = 0.01  # last epoch's gain (relative) that says more epochs would help
GAP = 0.10  # training accuracy this far above test accuracy
IMBALANCE = 3.0  # largest class / smallest class
DUPLICATES = 0.005  # share of test images that are near-copies of training images
DROPPED = 0.10  # share of steps run on fewer threads than planned


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def data_checks(splits, num_classes: int) -> dict:
    """metrics.json's "data_checks" from a run's splits: images per class in training, and
    the test images that are near-copies of training images (cnnkit.data.checks)."""
    from cnnkit.data.checks import class_counts, cross_duplicates

    x, y = splits["train"]
    test = splits.get("test")
    pairs = cross_duplicates(x, test[0]) if test is not None and test[0] is not splits[
        "train"][0] else []
    return {"class_counts": class_counts(y, num_classes), "test_images": len(test[0]) if test
            else 0, "duplicates": len(pairs), "duplicate_pairs": [list(p) for p in pairs[:20]]}


class Doctor:
    """The checks over one run's files; `findings()` runs them all."""

    def __init__(self, path, config: dict, history: dict, metrics: dict | None,
                 checks: dict | None):
        self.path, self.config, self.history = str(path), config, history
        self.metrics, self.checks = metrics or {}, checks or {}
        self.options = config.get("options") or {}
        self.resolved = config.get("resolved") or {}
        self.loss = history.get("loss") or []
        self.val = history.get("val_loss") or []
        self.out: list[dict] = []

    def find(self, code: str, message: str, next_: str) -> None:
        self.out.append({"code": code, "message": message, "next": next_})

    def again(self, code: str, *flags: str) -> str:
        """The run repeated from its own config.json with `flags` changed, into a new folder."""
        return (f"cnnkit train --config {self.path}/{CONFIG} {' '.join(flags)} "
                f"--out {self.path}-{code}")

    def findings(self) -> list[dict]:
        if not self.diverged():  # a diverged run's curves say nothing more
            self.overfit()
            self.undertrained()
        self.bn_unsettled()
        self.train_test_gap()
        self.imbalanced()
        self.duplicates()
        self.preset_reshaped()
        self.threads_dropped()
        return self.out

    # -- the curves -------------------------------------------------------------------------
    def diverged(self) -> bool:
        lr = _finite(self.history.get("lr") or [])
        lower = f"--lr {lr[0] / 10:.3g}" if lr else "--lr (a tenth of the rate used)"
        bad = [i + 1 for i, v in enumerate(self.loss) if v is None or not math.isfinite(v)]
        reason = str(self.metrics.get("stop_reason") or "")
        if bad or "diverg" in reason.lower():
            where = f"in epoch {bad[0]}" if bad else f"({reason})"
            self.find("diverged", f"the training loss became nan or inf {where}: the learning "
                      "rate is too high for this model", self.again("diverged", lower))
            return True
        loss = _finite(self.loss)
        if len(loss) >= 3 and all(v > loss[0] for v in loss[1:]):
            self.find("diverged", f"the training loss rose from the first epoch on ({loss[0]:.4g}"
                      f" -> {loss[-1]:.4g}): the learning rate is too high",
                      self.again("diverged", lower))
            return True
        return False

    def overfit(self) -> None:
        val = self.val
        good = [(v, i) for i, v in enumerate(val) if v is not None and math.isfinite(v)]
        if len(good) < 3 or val[-1] is None or not math.isfinite(val[-1]):
            return
        best, b = min(good)
        last, n = val[-1], len(val)
        if n - 1 - b < 2 or last <= best * (1 + RISE) or not self.loss[-1] < self.loss[b]:
            return
        stop = [] if self.options.get("early_stopping") else ["--early-stopping 3"]
        self.find("overfit", f"validation loss rose from {best:.4f} (epoch {b + 1}) to "
                  f"{last:.4f} (epoch {n}) while the training loss fell from "
                  f"{self.loss[b]:.4f} to {self.loss[-1]:.4f}: the model learns its training "
                  f"images by heart (best/ keeps epoch {b + 1})",
                  self.again("overfit", *stop, "--rotation-range 10", "--width-shift-range 0.1",
                             "--weight-decay 0.0005"))

    def undertrained(self) -> None:
        if self.metrics.get("stop_reason"):
            return
        watched = "val_loss" if _finite(self.val) else "loss"
        curve = self.val if watched == "val_loss" else self.loss
        epochs = len(curve)
        more = f"cnnkit train --resume {self.path} --epochs {max(2 * epochs, epochs + 5)}"
        if epochs == 1:
            self.find("undertrained", "one epoch only: too short to tell whether training "
                      "would still improve", more)
            return
        if epochs < 2 or not all(v is not None and math.isfinite(v) for v in curve[-2:]):
            return
        prev, last = curve[-2], curve[-1]
        if last <= min(_finite(curve)) and prev - last > STILL_IMPROVING * abs(prev):
            self.find("undertrained", f"{watched} still fell {(prev - last) / abs(prev):.1%} in "
                      f"the last epoch ({prev:.4f} -> {last:.4f}): more epochs would help", more)

    # -- what the run recorded --------------------------------------------------------------
    def bn_unsettled(self) -> None:
        bn = self.metrics.get("batch_norm") or {}
        if not bn.get("unsettled") or bn.get("recomputed"):
            return
        epochs = len(self.loss)
        batch = (self.options.get("train") or {}).get("batch_size") or 32
        self.find("bn-unsettled", f"batch-norm moving statistics after {bn.get('steps', '?')} "
                  "steps still hold much of their starting values, and were not recomputed: "
                  "evaluation ran with statistics the model never saw",
                  self.again("bn-unsettled", f"--epochs {max(2 * epochs, epochs + 5)}",
                             f"--batch-size {max(8, batch // 2)}"))

    def train_test_gap(self) -> None:
        train, test = self.metrics.get("final_accuracy"), self.metrics.get("test_accuracy")
        if not isinstance(train, (int, float)) or not isinstance(test, (int, float)):
            return
        if train - test >= GAP:
            self.find("train-test-gap", f"training accuracy {train:.4f} but test accuracy "
                      f"{test:.4f}: what the model learnt does not carry over to new images",
                      self.again("train-test-gap", "--rotation-range 10",
                                 "--width-shift-range 0.1", "--weight-decay 0.0005"))

    def imbalanced(self) -> None:
        counts = self.checks.get("class_counts")
        if not counts:
            return
        names = (self.resolved.get("dataset") or {}).get("class_names") or list(range(len(counts)))
        big = max(range(len(counts)), key=counts.__getitem__)
        small = min(range(len(counts)), key=counts.__getitem__)
        train = self.options.get("train") or {}
        if train.get("class_weight") or train.get("sampler"):
            return  # already weighed or sampled: the per-class recall says how well
        if counts[big] >= IMBALANCE * counts[small]:
            self.find("imbalanced", f"class {names[big]!s} has {counts[big]:,} training images, "
                      f"class {names[small]!s} {counts[small]:,}: the model learns to favour the "
                      "larger classes (look at the per-class recall in report.md)",
                      self.again("imbalanced", "--class-weight balanced"))

    def duplicates(self) -> None:
        n, test = self.checks.get("duplicates") or 0, self.checks.get("test_images") or 0
        if test and n >= max(1, DUPLICATES * test):
            pairs = ", ".join(f"test {t} = train {r}" for t, r in
                              (self.checks.get("duplicate_pairs") or [])[:3])
            self.find("duplicates", f"{n:,} of {test:,} test images are near-copies of "
                      f"training images ({pairs}): the test accuracy counts them as new",
                      f"cnnkit doctor {self.path} --json")

    def preset_reshaped(self) -> None:
        note = self.resolved.get("model_note")
        if note and "rebuilt" in str(note):
            self.find("preset-reshaped", str(note), "cnnkit presets")

    def threads_dropped(self) -> None:
        rec = self.metrics.get("threads") or {}
        planned, used = rec.get("threads"), rec.get("used") or {}
        total = sum(used.values()) if used else 0
        if not isinstance(planned, int) or not total:
            return
        fewer = sum(k for n, k in used.items() if int(n) < planned)
        if fewer >= DROPPED * total:
            self.find("threads-dropped", f"{fewer:,} of {total:,} steps ran on fewer than the "
                      f"{planned} planned threads: the machine was busy, so times and samples/s "
                      "understate this model's speed",
                      self.again("threads-dropped", f"--threads {planned}"))


def diagnose(run) -> list[dict]:
    """The findings for one run directory (a path or a RunDir); [] for a healthy run."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    metrics = run.metrics
    checks = (metrics or {}).get("data_checks")
    if checks is None:
        checks = _checks_again(run)
    return Doctor(run.path, run.config, run.history, metrics, checks).findings()


def _checks_again(run: RunDir) -> dict | None:
    """data_checks for a run whose metrics.json has none: its splits made again."""
    from cnnkit.errors import CnnkitError
    from cnnkit.runs.prepare import prepare_data

    options = run.options
    try:
        shape = (run.resolved.get("dataset") or {}).get("image_shape")
        ds, splits = prepare_data(options, tuple(shape) if options["dataset"].startswith(
            "folder:") and shape else None)
    except (CnnkitError, OSError, KeyError):
        return None
    return data_checks(splits, ds.num_classes)


def finding_lines(findings: list[dict]) -> list[str]:
    """One line each: 'overfit: validation loss rose ...; try: cnnkit train ...'."""
    return [f"{f['code']}: {f['message']}; try: {f['next']}" for f in findings]

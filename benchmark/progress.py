"""Progress of a run: one line per (architecture, fold) on the terminal, live epoch updates, an ETA
that weighs each architecture's cost (its FLOPs before its first fold, its measured seconds after), and
the same events for a callback (the Python API)."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean

import numpy as np

from benchmark.errors import counted

# How a fold's time grows with its architecture's FLOPs before two costs are measured: from the issue-26
# main job at 62867f1 (baseline 21 s, pyramid_down 91 s a fold: 8.1× the FLOPs, 4.3× the time): α 0.70;
# a 2-epoch run of all eight gave 0.74 (15.0 s and 70.9 s; docs/performance.md, issue 26).
FLOPS_POWER, FLOPS_POWER_RANGE = 0.7, (0.3, 1.2)


@dataclass
class Progress:
    """``plan`` is the architecture of every (architecture, fold) of the run, in order."""

    plan: list[str]
    quiet: bool = False
    metric: str = "f1"  # shown for each fold, with ROC-AUC
    jobs: int = 1  # trainings running at once
    interrupted: threading.Event = field(default_factory=threading.Event)  # set by the Ctrl-C handler
    stream: object = field(default_factory=lambda: sys.stderr)  # looked up when created, not at import
    callback: Callable[[dict], None] | None = None  # each event as a dict
    done: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)  # measured task seconds per architecture
    costs: dict[str, float] = field(default_factory=dict)  # forward FLOPs per image (the prior before a fold)
    last: float = field(default_factory=lambda: time.perf_counter())  # when the last fold finished (or the run began)
    left: Counter = field(init=False)  # (architecture, fold) pairs still to come, per architecture

    def __post_init__(self):
        self.left = Counter(self.plan)

    @property
    def total(self) -> int:
        return len(self.plan)

    def eta_seconds(self, running: str | None = None, fraction: float = 0.0) -> float | None:
        """Seconds left: each remaining fold at :meth:`expected` seconds, less ``fraction`` of the ``running``
        one; over the jobs at once.

        >>> p = Progress(["a", "a", "b", "b"])
        >>> p.fold_done("a", 0, 2, None, 10.0); p.fold_done("b", 0, 2, None, 30.0)
        >>> p.eta_seconds(), p.eta_seconds("a", 0.5)
        (40.0, 35.0)
        """
        if not self.seconds:
            return None
        expected = self.expected()
        left = sum(expected[a] * n for a, n in self.left.items() if n)
        if running is not None:
            left -= expected[running] * fraction
        return max(left, 0.0) / self.jobs

    def expected(self) -> dict[str, float]:
        """Each architecture's seconds per fold: the mean of its own measured folds; before its first, from
        its FLOPs (``costs``) by a power law through the measured architectures, seconds = c · FLOPs^α (α
        fitted once two costs differ and kept within [FLOPS_POWER_RANGE], FLOPS_POWER before: a fold's time
        grows more slowly than its FLOPs, its fixed costs being the same); else the mean of those measured.

        >>> p = Progress(["a", "b", "c"], costs={"a": 1.0, "b": 4.0, "c": 16.0})
        >>> p.fold_done("a", 0, 1, None, 10.0); round(p.expected()["c"], 1)  # 10 · 16^0.7
        69.6
        >>> p.fold_done("b", 0, 1, None, 20.0); round(p.expected()["c"], 1)  # α = 0.5 from a and b
        40.0
        """
        measured = {a: mean(s) for a, s in self.seconds.items()}
        pairs = np.array([(self.costs[a], s) for a, s in measured.items() if self.costs.get(a)]).reshape(-1, 2)
        estimate = None
        if len(pairs):
            log_flops, log_seconds = np.log(pairs.T)
            power = np.polyfit(log_flops, log_seconds, 1)[0] if len(set(log_flops)) > 1 else FLOPS_POWER
            power = float(np.clip(power, *FLOPS_POWER_RANGE))
            scale = float(np.mean(log_seconds - power * log_flops))
            estimate = lambda cost: float(np.exp(scale + power * np.log(cost)))  # noqa: E731
        default = mean(measured.values())
        return {
            a: measured.get(a, estimate(self.costs[a]) if estimate and self.costs.get(a) else default)
            for a in self.left
        }

    def _eta(self, running: str | None = None, fraction: float = 0.0) -> str:
        left = self.eta_seconds(running, fraction)
        if left is None:
            return "ETA after the first fold"
        return f"ETA {left / 60:.0f} min" if left >= 60 else f"ETA {left:.0f} s"

    def _prefix(self, arch: str, fold: int, folds: int) -> str:
        width = len(str(self.total))
        return f"[{self.done + 1:>{width}}/{self.total}] {arch} fold {fold + 1}/{folds}"

    def epoch(self, arch: str, fold: int, folds: int, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            self.check()
            self._emit({"event": "epoch", "arch": arch, "fold": fold, "epoch": epoch, "epochs": epochs, "logs": logs})
            if not self.quiet and self.stream.isatty():
                val_loss = logs.get("val_loss", float("nan"))
                line = f"{self._prefix(arch, fold, folds)}  epoch {epoch}/{epochs}  val_loss {val_loss:.4f}"
                print(f"\r{line}  {self._eta(arch, epoch / epochs)}\033[K", end="", file=self.stream, flush=True)

        return report

    def check(self) -> None:
        """Raise KeyboardInterrupt after a Ctrl-C, even one whose own KeyboardInterrupt was swallowed
        (raised inside a finalizer, Python ignores it)."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt

    def skip(self, arch: str, n: int) -> None:
        """Count ``n`` folds of ``arch`` that will not run (the architecture failed)."""
        self.done += n
        self.left[arch] -= n

    def fold_done(
        self, arch: str, fold: int, folds: int, record: dict | None, seconds: float | None, note: str = ""
    ) -> None:
        self.check()
        now = time.perf_counter()
        if seconds is not None:  # one job: what the user waits for, the driver's saving and scoring included
            self.seconds.setdefault(arch, []).append(max(seconds, now - self.last) if self.jobs == 1 else seconds)
        self.last = now
        prefix = self._prefix(arch, fold, folds)
        self.done += 1
        self.left[arch] -= 1
        event = {"event": "fold", "arch": arch, "fold": fold, "folds": folds, "done": self.done, "total": self.total}
        self._emit({**event, "record": record, "note": note.strip(), "eta_seconds": self.eta_seconds()})
        if self.quiet:
            return
        if record:
            m = record["metrics"]
            detail = (
                f"{counted(record['epochs'], 'epoch')} (best {record['best_epoch']})  "
                f"{self.metric} {m[self.metric]:.3f}  roc_auc {m['roc_auc']:.3f}  {record['fit_seconds']:.0f} s"
            )
        else:
            detail = ""
        eta = self._eta() if self.seconds else ""  # nothing measured yet (a resume of saved folds): no ETA to give
        line = f"{prefix}  {note}{detail}  {eta}".rstrip()
        print(f"\r{line}\033[K" if self.stream.isatty() else line, file=self.stream, flush=True)

    def _emit(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)

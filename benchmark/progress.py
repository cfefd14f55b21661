"""Progress of a run: one line per (architecture, fold) on the terminal, live epoch updates, an ETA
that weighs each architecture's cost (its FLOPs before its first fold, its measured seconds after), and
the same events for a callback (the Python API)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean

import numpy as np


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
        """Each architecture's seconds per fold: the mean of its own measured folds; before its first, its
        FLOPs (``costs``) times the seconds per FLOP of the folds measured so far — a line through their
        architectures' means (seconds = a + b · FLOPs) once two costs differ, a proportion before — else the
        mean of the architectures measured.

        >>> p = Progress(["a", "b", "c"], costs={"a": 1.0, "b": 2.0, "c": 4.0})
        >>> p.fold_done("a", 0, 1, None, 10.0); p.expected()["c"]  # in proportion to one measured cost
        40.0
        >>> p.fold_done("b", 0, 1, None, 15.0); round(p.expected()["c"], 6)  # the line through two: 5 s + 5 s/FLOP
        25.0
        """
        measured = {a: mean(s) for a, s in self.seconds.items()}
        pairs = np.array([(self.costs[a], s) for a, s in measured.items() if self.costs.get(a)]).reshape(-1, 2)
        estimate = None
        if len(pairs):
            flops, seconds = pairs.T
            slope, intercept = np.polyfit(flops, seconds, 1) if len(set(flops)) > 1 else (0.0, -1.0)
            if slope > 0 and intercept >= 0:
                estimate = lambda cost: float(intercept + slope * cost)  # noqa: E731
            else:  # one cost, or a line that would give a cheaper architecture more time: a proportion
                estimate = lambda cost: float(cost * seconds.sum() / flops.sum())  # noqa: E731
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
        if seconds is not None:
            self.seconds.setdefault(arch, []).append(seconds)
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
                f"{record['epochs']} epoch{'s' * (record['epochs'] != 1)} (best {record['best_epoch']})  "
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

"""Progress of a run on the terminal: one line per (architecture, fold), live epoch updates, an ETA."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field


@dataclass
class Progress:
    """One line per (arch, fold) with an ETA for the whole run; live epoch updates on a terminal."""

    total: int
    quiet: bool = False
    metric: str = "f1"  # shown for each fold, with ROC-AUC
    jobs: int = 1  # trainings running at once
    interrupted: threading.Event = field(default_factory=threading.Event)  # set by the Ctrl-C handler
    stream: object = field(default_factory=lambda: sys.stderr)  # looked up when created, not at import
    done: int = 0
    trained_seconds: list[float] = field(default_factory=list)

    def _eta(self) -> str:
        if not self.trained_seconds:
            return "ETA after the first fold"
        left = sum(self.trained_seconds) / len(self.trained_seconds) * (self.total - self.done) / self.jobs
        return f"ETA {left / 60:.0f} min" if left >= 60 else f"ETA {left:.0f} s"

    def _prefix(self, arch: str, fold: int, folds: int) -> str:
        width = len(str(self.total))
        return f"[{self.done + 1:>{width}}/{self.total}] {arch} fold {fold + 1}/{folds}"

    def epoch(self, arch: str, fold: int, folds: int, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            self.check()
            if not self.quiet and self.stream.isatty():
                val_loss = logs.get("val_loss", float("nan"))
                line = f"{self._prefix(arch, fold, folds)}  epoch {epoch}/{epochs}  val_loss {val_loss:.4f}"
                print(f"\r{line}  {self._eta()}\033[K", end="", file=self.stream, flush=True)

        return report

    def check(self) -> None:
        """Raise KeyboardInterrupt after a Ctrl-C, even one whose own KeyboardInterrupt was swallowed
        (raised inside a finalizer, Python ignores it)."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt

    def skip(self, n: int) -> None:
        """Count ``n`` (arch, fold) pairs that will not run (their architecture failed)."""
        self.done += n

    def fold_done(
        self, arch: str, fold: int, folds: int, record: dict | None, seconds: float | None, note: str = ""
    ) -> None:
        self.check()
        if seconds is not None:
            self.trained_seconds.append(seconds)
        prefix = self._prefix(arch, fold, folds)
        self.done += 1
        if self.quiet:
            return
        if record:
            m = record["metrics"]
            detail = (
                f"{record['epochs']} epochs (best {record['best_epoch']})  "
                f"{self.metric} {m[self.metric]:.3f}  roc_auc {m['roc_auc']:.3f}  {record['fit_seconds']:.0f} s"
            )
        else:
            detail = ""
        line = f"{prefix}  {note}{detail}  {self._eta()}"
        print(f"\r{line}\033[K" if self.stream.isatty() else line, file=self.stream, flush=True)

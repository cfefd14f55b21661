"""A clean console: the backends' start-up chatter goes to ``run.log``, not to the terminal.

TensorFlow, JAX and XLA log from C++ straight to file descriptor 2 (absl's "All log messages
before absl::InitializeLog()", oneDNN notices, "failed call to cuInit" on a machine without a
GPU) and their Python modules warn about their own internals. :class:`Console` points file
descriptor 2 at a log file while keeping Python's ``sys.stderr`` on the terminal, so the tool's
own lines and errors still show; ``-v`` leaves everything as it is.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

# Python warnings that come from the libraries' internals, not from anything the user gave: kept in the log
# (joblib's loky: "A worker stopped while some jobs were given to the executor" when it replaces a worker).
LIBRARY_WARNINGS = (
    *("keras", "tensorflow", "jax", "absl", "torch", "google", "seaborn", "matplotlib", "optree", "joblib"),
)
LIBRARY_FILE = re.compile(rf"[/\\]({'|'.join(LIBRARY_WARNINGS)})[/\\]")
# Their loggers warn on the terminal through Python's sys.stderr (TensorFlow's "tf.function retracing" each
# time another fold model predicts): errors only, unless -v.
LIBRARY_LOGGERS = ("tensorflow", "absl", "jax")


class Console:
    """Use as a context manager around a command; :meth:`keep_in` moves the log into the run folder."""

    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.log: Path | None = None

    def __enter__(self) -> Console:
        if self.verbose:
            return self
        sys.stderr.flush()
        self._terminal = os.dup(2)
        self._stderr = sys.stderr
        if _on_fd2(sys.stderr):  # else it is already elsewhere (a notebook, a test's capture): left alone
            sys.stderr = os.fdopen(os.dup(self._terminal), "w", buffering=1, encoding="utf-8", errors="replace")
        fd, name = tempfile.mkstemp(prefix="benchmark-", suffix=".log")
        os.close(fd)
        self._redirect(Path(name))
        self._filters = warnings.catch_warnings()
        self._filters.__enter__()
        warnings.showwarning = _show_warning
        self._levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        return self

    def _redirect(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        self.log = path

    def keep_in(self, path: Path) -> None:
        """Append what was captured so far to ``path`` and capture there from now on."""
        if self.verbose or self.log is None or self.log == path:
            return
        with open(path, "ab") as out, open(self.log, "rb") as captured:
            shutil.copyfileobj(captured, out)
        previous = self.log
        self._redirect(path)
        previous.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self.verbose:
            return
        self._filters.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        sys.stderr.flush()
        os.dup2(self._terminal, 2)
        os.close(self._terminal)
        if sys.stderr is not self._stderr:
            sys.stderr.close()
            sys.stderr = self._stderr
        if self.log is not None and self.log.parent == Path(tempfile.gettempdir()):
            self.log.unlink(missing_ok=True)  # never moved into a run folder: nothing to keep


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning into the log (file descriptor 2), any other on the terminal as Python shows it."""
    text = warnings.formatwarning(message, category, filename, lineno, line)
    if LIBRARY_FILE.search(filename):
        os.write(2, text.encode("utf-8", "replace"))
    else:
        sys.stderr.write(text)


def _on_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def error_paragraph(message: str) -> str:
    """``message`` as the one paragraph an error is shown in: ``error:``, then lines indented under it."""
    text = textwrap.fill(message, width=100, subsequent_indent=" " * 7, break_long_words=False, break_on_hyphens=False)
    return "error: " + text

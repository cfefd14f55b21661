"""The errors a user can fix, spelt for where the setting was typed: ``--val-fraction 1.5`` on the
command line, ``val_fraction=1.5`` in Python."""

from __future__ import annotations

import dataclasses
import math
import re

FLAG = re.compile(r"--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one: messages say "1 epoch", not "1 epochs".

    >>> counted(1, "epoch"), counted(3, "epoch")
    ('1 epoch', '3 epochs')
    """
    return f"{n} {noun}{'s' * (n != 1)}"


class UsageError(Exception):
    """A mistake the user can fix (bad setting, bad data folder), in one paragraph that names the setting
    as the command line spells it. The CLI prints it and exits with status 2, without a traceback;
    :meth:`in_python` spells the settings as ``benchmark.run``'s keyword arguments.

    >>> err = UsageError("--val-fraction 1.5: give a fraction between 0 and 1. Raise --val-fraction or add images.")
    >>> err.setting
    'val_fraction'
    >>> str(err.in_python({"val_fraction": 1.5}))
    'val_fraction=1.5: give a fraction between 0 and 1. Raise val_fraction or add images.'
    """

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        leading = FLAG.match(message)
        self.setting = setting or (leading[1].replace("-", "_") if leading else None)

    def in_python(self, values: dict) -> UsageError:
        """This error with each ``--flag`` that names one of ``values`` (setting → value) written as that
        keyword argument: ``name=value`` where the message gives its value, else ``name``."""
        text, out, at = str(self), [], 0
        for match in FLAG.finditer(text):
            name = match[1].replace("-", "_")
            out.append(text[at : match.start()])
            at = match.end()
            if name not in values:
                out.append(match[0])
                continue
            value = f" {values[name]}"
            given = text.startswith(value, at) and not text[at + len(value) : at + len(value) + 1].isalnum()
            out.append(f"{name}={values[name]}" if given else name)
            at += len(value) if given else 0
        return UsageError("".join(out) + text[at:], self.setting)


def check_finite(settings) -> None:
    """A UsageError naming the first number of ``settings`` (a dataclass of settings) that is NaN or infinite:
    nan passes every comparison of the checks that follow, and inf most of them."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{f.name.replace('_', '-')} {value}: give a finite number.")

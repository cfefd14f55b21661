"""Training, tuned: the search space of ``--tune``, the trials every architecture gets on every fold, and
which trial a fold keeps.

Nested, with no leak: each trial of an outer fold fits the fold's fit part and is judged by the loss on its
inner validation split, the criterion early stopping already uses; the fold keeps the trial with the lowest
inner loss, whose model is then the fold model, and only that model predicts the outer score fold, once.
Light to import (no Keras): the settings are checked here when the command line is parsed.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from benchmark.errors import UsageError

# The settings --tune may search (TrainSettings' fields), with how a value is read.
TUNABLE = {"lr": float, "batch_size": int, "augment": str, "label_smoothing": float, "lr_decay_epochs": float}
LOG_RANGE = re.compile(r"log\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)")


@dataclass(frozen=True)
class Space:
    """One searched setting: its values (a grid axis, or the choices a sample draws from), or a log-uniform
    range ``low``..``high`` (sampled only, with ``--trials``)."""

    name: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None


def parse_tune(spec: str) -> tuple[Space, ...]:
    """``--tune``'s search space: space-separated ``name=v1,v2,...`` or ``name=log(low,high)``.

    >>> [(s.name, s.values) for s in parse_tune("lr=3e-4,1e-3 augment=light,strong")]
    [('lr', (0.0003, 0.001)), ('augment', ('light', 'strong'))]
    >>> parse_tune("lr=log(1e-4,1e-2)")[0].high
    0.01
    """
    spaces, seen = [], set()
    for part in spec.split():
        name, _, given = part.partition("=")
        what = f"--tune {part}"
        if name not in TUNABLE:
            raise UsageError(f"{what}: {name!r} is not a setting --tune searches; choose from {', '.join(TUNABLE)}.")
        if name in seen:
            raise UsageError(f"{what}: {name} is given twice; give each setting once, its values comma-separated.")
        seen.add(name)
        if match := LOG_RANGE.fullmatch(given):
            low, high = (_value(name, v, what) for v in match.groups())
            if name not in ("lr", "lr_decay_epochs", "label_smoothing") or not 0 < low < high:
                raise UsageError(
                    f"{what}: log(low,high) needs a numeric setting and 0 < low < high, e.g. lr=log(1e-4,1e-2)."
                )
            spaces.append(Space(name, low=low, high=high))
            continue
        values = tuple(_value(name, v, what) for v in given.split(",") if v.strip())
        if not values or len(set(values)) != len(values):
            raise UsageError(f"{what}: give one or more different values, comma-separated, e.g. lr=3e-4,1e-3,3e-3.")
        spaces.append(Space(name, values=values))
    if not spaces:
        raise UsageError(f'--tune {spec!r}: give the settings to search, e.g. --tune "lr=3e-4,1e-3,3e-3".')
    return tuple(spaces)


def _value(name: str, text: str, what: str):
    try:
        value = TUNABLE[name](text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a value of {name}.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{what}: {text.strip()!r} is not a finite number.")
    return value


def trial_settings(spaces: tuple[Space, ...], trials: int | None, seed: int) -> list[dict]:
    """The trials, each a dict of setting → value, the same for every architecture and fold: the whole grid in
    ``spaces``' order, or, with ``trials``, that many drawn by Optuna's RandomSampler seeded with ``seed`` (the
    draws do not depend on any result, so every architecture gets the same sample).

    >>> trial_settings(parse_tune("lr=1e-3,3e-3 batch_size=32,64"), None, 0)[:2]
    [{'lr': 0.001, 'batch_size': 32}, {'lr': 0.001, 'batch_size': 64}]
    >>> sample = trial_settings(parse_tune("lr=log(1e-4,1e-2) batch_size=32,64"), 3, seed=7)
    >>> sample == trial_settings(parse_tune("lr=log(1e-4,1e-2) batch_size=32,64"), 3, seed=7), len(sample)
    (True, 3)
    >>> all(1e-4 <= t["lr"] <= 1e-2 and t["batch_size"] in (32, 64) for t in sample)
    True
    """
    if trials is None:
        return [dict(zip([s.name for s in spaces], combo, strict=True)) for combo in
                itertools.product(*(s.values for s in spaces))]  # fmt: skip
    try:
        import optuna
    except ImportError:
        raise UsageError("--trials needs Optuna: pip install -e '.[tune]' (or pip install optuna).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {
        s.name: optuna.distributions.FloatDistribution(s.low, s.high, log=True)
        if s.is_range
        else optuna.distributions.CategoricalDistribution(s.values)
        for s in spaces
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [{s.name: study.ask(distributions).params[s.name] for s in spaces} for _ in range(trials)]


def check_tuning(tune: str | None, trials: int | None) -> None:
    """``--tune`` and ``--trials`` together: a range needs a sample size; a sample size needs a space."""
    if tune is None:
        if trials is not None:
            raise UsageError(f"--trials {trials}: give --tune too (the settings to search).")
        return
    from benchmark.training import TrainSettings

    spaces = parse_tune(tune)
    for space in spaces:  # each value as --NAME would take it
        for value in space.values or (space.low, space.high):
            try:
                TrainSettings(**{space.name: value})
            except UsageError as err:
                raise UsageError(f"--tune {space.name}: {err}") from None
    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give a positive whole number of trials.")
    if trials is None and (ranged := [s.name for s in spaces if s.is_range]):
        raise UsageError(
            f"--tune: {', '.join(ranged)} is a range, which has no grid; add --trials N to sample N trials from it."
        )


def choose_trial(inner_losses: dict[int, float]) -> int:
    """The trial a fold keeps: the lowest inner-validation loss (each trial's best epoch), the first on a tie.

    >>> choose_trial({0: 0.31, 1: 0.27, 2: 0.27})
    1
    """
    return min(inner_losses, key=lambda t: (inner_losses[t], t))

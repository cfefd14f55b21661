"""The settings grouped by role (data, cross-validation, training, execution, output, tracking), flat at the
edges: every flag of `benchmark run` is one field of one group, each group checks its own fields."""

import argparse

import pytest

from benchmark import UsageError
from benchmark.cli import _parser
from benchmark.config import GROUPS, RunConfig, defaults, setting_names


def run_flags() -> set[str]:
    """The settings `benchmark run` parses (its arguments' destinations; --verbose is the console's)."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices["run"]._actions} - {"help", "verbose"}


def test_every_flag_of_benchmark_run_is_one_field_of_one_group():
    assert run_flags() == set(setting_names())
    fields = [name for kind in GROUPS.values() for name in kind.__dataclass_fields__]
    assert len(fields) == len(set(fields))  # no name in two groups


def test_flat_settings_go_to_their_groups_and_come_back_flat(tmp_path):
    config = RunConfig.from_flat(data=tmp_path, out=tmp_path / "o", epochs=3, jobs=2, folds=4, track_models="all")
    assert (config.training.epochs, config.execution.jobs, config.cv.folds, config.tracking.track_models) == (
        3, 2, 4, "all",
    )  # fmt: skip
    flat = config.to_dict()
    assert flat == {**defaults(), "data": str(tmp_path), "out": str(tmp_path / "o"), "epochs": 3, "jobs": 2,
                    "folds": 4, "track_models": "all"}  # fmt: skip
    assert RunConfig.from_flat(**flat).to_dict() == flat
    assert "n_classes" not in flat  # set from the data, not a setting


@pytest.mark.parametrize(
    "setting, value, group",
    [
        ("channels", 2, "images"),
        ("val_fraction", 1.5, "cv"),
        ("epochs", 0, "training"),
        ("lr", float("nan"), "training"),
        ("jobs", 0, "execution"),
        ("save_models", "some", "output"),
        ("track_models", "some", "tracking"),
    ],
)
def test_each_group_refuses_a_bad_value_of_its_own_naming_the_flag(tmp_path, setting, value, group):
    with pytest.raises(UsageError) as raised:
        RunConfig.from_flat(data=tmp_path, out=tmp_path, **{setting: value})
    assert raised.value.setting == setting and str(raised.value).startswith(f"--{setting.replace('_', '-')} ")
    kind = GROUPS[group]
    with pytest.raises(UsageError):  # the group itself checks it, wherever it is made
        kind(**{"data": tmp_path} if group == "images" else {"out": tmp_path} if group == "output" else {},
             **{setting: value})  # fmt: skip


def test_an_unknown_setting_is_named(tmp_path):
    with pytest.raises(UsageError, match=r"unknown setting\(s\) epoch; known: .*epochs"):
        RunConfig.from_flat(data=tmp_path, out=tmp_path, epoch=3)

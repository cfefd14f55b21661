import json

import numpy as np
import pytest

from benchmark import UsageError
from benchmark.data.splits import Fold, NestedStratifiedKFold, file_groups, load_splits, save_splits, straddling

LABELS = np.array([0] * 1341 + [1] * 3875)  # the Kaggle training split's class counts


@pytest.fixture(scope="module")
def folds():
    return NestedStratifiedKFold(n_splits=5, val_fraction=0.1, seed=42).split(LABELS)


def test_parts_are_disjoint_and_score_folds_cover_everything_once(folds):
    scored = np.concatenate([f.score for f in folds])
    assert sorted(scored.tolist()) == list(range(len(LABELS)))
    for f in folds:
        assert not set(f.train) & set(f.val)
        assert not set(f.train) & set(f.score)
        assert not set(f.val) & set(f.score)
        assert len(f.train) + len(f.val) + len(f.score) == len(LABELS)


def test_every_part_of_every_fold_is_stratified(folds):
    rate = LABELS.mean()
    for f in folds:
        assert len(f.score) in (1043, 1044)
        assert len(f.val) in (417, 418)  # 10 % of the fold's training part
        for part in (f.train, f.val, f.score):
            # within one image of the exact class proportion
            assert abs(LABELS[part].sum() - rate * len(part)) <= 1


def test_same_labels_and_seed_give_the_same_folds_and_another_seed_differs(folds):
    again = NestedStratifiedKFold(5, 0.1, 42).split(LABELS)
    for a, b in zip(folds, again, strict=False):
        for part in ("train", "val", "score"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    other = NestedStratifiedKFold(5, 0.1, 7).split(LABELS)
    assert not np.array_equal(other[0].score, folds[0].score)


def test_splits_json_round_trip(tmp_path, folds):
    paths = tuple(f"train/{'NORMAL' if y == 0 else 'PNEUMONIA'}/{i}.jpeg" for i, y in enumerate(LABELS))
    save_splits(tmp_path / "splits.json", folds, paths, 5, 42, 0.1)
    loaded = load_splits(tmp_path / "splits.json", paths)
    for a, b in zip(folds, loaded, strict=False):
        np.testing.assert_array_equal(a.score, b.score)
        np.testing.assert_array_equal(a.val, b.val)
    assert load_splits(tmp_path / "splits.json", paths[:-1]) is None  # a file vanished: stale


@pytest.mark.parametrize(
    "k, labels, message",
    [
        (1, [0] * 10 + [1] * 10, "at least 2 folds"),
        (5, [0] * 4 + [1] * 10, "a class has only 4 image"),
        (2, [0] * 3 + [1] * 10, "needs at least 4 per class"),
        (2, [0] * 10 + [1] * 10, "training part of 10 images gives 1 validation image"),
    ],
)
def test_impossible_splits_are_usage_errors(k, labels, message):
    with pytest.raises(UsageError, match=message):
        NestedStratifiedKFold(k, 0.1, 0).split(np.array(labels))


@pytest.mark.realdata
def test_grouped_folds_keep_every_real_file_name_group_on_one_side():
    from benchmark.data.images import discover
    from tests.conftest import REAL_224

    train = discover(REAL_224).train
    groups = file_groups(train.paths, "kermany")
    # The Kaggle training split: 1,341 NORMAL images under 1,211 IM-NNNN prefixes, 3,875 PNEUMONIA under 1,635 personN.
    assert [len(set(groups[train.labels == c])) for c in (0, 1)] == [1211, 1635]
    folds = NestedStratifiedKFold(5, 0.1, 42).split(train.labels, groups)
    assert straddling(folds, groups) is None
    scored = np.concatenate([f.score for f in folds])
    assert sorted(scored.tolist()) == list(range(len(train.labels)))  # every image scored once
    for f in folds:
        parts = [set(groups[getattr(f, part)]) for part in ("train", "val", "score")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert abs(train.labels[f.score].mean() - train.labels.mean()) < 0.02  # still stratified
        assert 0.07 < len(f.val) / (len(f.train) + len(f.val)) < 0.13  # about --val-fraction
    image_level = NestedStratifiedKFold(5, 0.1, 42).split(train.labels)
    assert straddling(image_level, groups) is not None  # the leak grouped folds prevent


def test_groups_from_a_pattern_a_file_and_files_without_one(tmp_path):
    paths = ("train/A/p1_x.png", "train/A/p1_y.png", "train/B/p2_z.png", "train/B/loose.png")
    with pytest.raises(UsageError, match=r"--groups \^\(p\\d\+\)_: 1 image\(s\) have no group: train/B/loose.png"):
        file_groups(paths, r"^(p\d+)_")
    assert file_groups(paths, r"^(p\d+)_", ungrouped="own").tolist() == ["p1", "p1", "p2", "own:train/B/loose.png"]
    with pytest.raises(UsageError, match="one capture group"):
        file_groups(paths, r"^p\d+_")
    table = tmp_path / "groups.csv"
    table.write_text(
        "path,group\ntrain/A/p1_x.png,one\ntrain/A/p1_y.png,one\ntrain/B/p2_z.png,two\ntrain/B/loose.png,two\n"
    )
    assert file_groups(paths, table=table).tolist() == ["one", "one", "two", "two"]
    table.write_text("file,patient\nx,1\n")
    with pytest.raises(UsageError, match="columns path and group"):
        file_groups(paths, table=table)


def test_repeats_draw_new_folds_and_keep_the_first_repeat_unchanged():
    once = NestedStratifiedKFold(5, 0.1, 42).split(LABELS)
    thrice = NestedStratifiedKFold(5, 0.1, 42, repeats=3).split(LABELS)
    assert len(thrice) == 15
    for a, b in zip(once, thrice[:5], strict=True):  # repeat 0 is the plain k-fold
        for part in ("train", "val", "score"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    for r in range(3):  # each repeat scores every image once
        scored = np.concatenate([f.score for f in thrice[5 * r : 5 * r + 5]])
        assert sorted(scored.tolist()) == list(range(len(LABELS)))
    assert not np.array_equal(thrice[5].score, thrice[0].score)


def test_splits_json_records_groups_and_repeats(tmp_path):
    labels = np.array([0] * 20 + [1] * 20)
    paths = tuple(f"train/{'A' if y == 0 else 'B'}/p{i // 2}_{i}.png" for i, y in enumerate(labels))
    groups = file_groups(paths, r"^(p\d+)_")
    folds = NestedStratifiedKFold(2, 0.25, 0, repeats=2).split(labels, groups)
    save_splits(tmp_path / "splits.json", folds, paths, 2, 0, 0.25, groups, repeats=2)
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["repeats"] == 2 and [f["repeat"] for f in saved["folds"]] == [0, 0, 1, 1]
    assert saved["groups"]["train/A/p0_0.png"] == "p0"
    assert load_splits(tmp_path / "splits.json", paths, groups) is not None
    assert load_splits(tmp_path / "splits.json", paths, None) is None  # made with groups: not for an ungrouped run
    other = np.array([g + "x" if g == "p0" else g for g in groups], dtype=object)
    assert load_splits(tmp_path / "splits.json", paths, other) is None  # another grouping
    moved = [Fold(f.train, f.val, f.score) for f in folds]
    moved[0] = Fold(np.r_[folds[0].train, folds[0].score[:1]], folds[0].val, folds[0].score)
    assert "is in both the train and the score part of fold 1" in straddling(moved, groups)

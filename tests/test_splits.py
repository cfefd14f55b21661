import numpy as np
import pytest

from benchmark import UsageError
from benchmark.splits import NestedStratifiedKFold, load_splits, save_splits

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

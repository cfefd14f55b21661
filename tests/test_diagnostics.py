from benchmark.evaluation.diagnostics import flags


def entry(oscillation=0.2, gap=-0.05, best=(4, 5, 6), epochs=(8, 9, 10), suggested=2, std=0.01):
    """(curves, std of f1): what flags reads of an architecture."""
    curves = {
        "oscillation": {"mean": oscillation},
        "gap": {"mean": gap},
        "best_epoch": list(best),
        "epochs": list(epochs),
        "suggested_patience": suggested,
    }
    return curves, std


def test_smooth_curves_raise_no_flag():
    assert flags(*entry(), "f1", max_epochs=10, patience=3) == []


def test_each_flag_names_its_number_and_remedy():
    found = flags(*entry(best=(1, 1, 6), std=0.09, suggested=3), "f1", max_epochs=12, patience=3)
    assert found == [
        "best validation loss at epoch 1 in 2/3 folds: the validation loss is unstable early; "
        "try a lower --lr or a longer --patience",
        "folds disagree (std of f1 0.09): compare with care; more folds narrow it",
        "a fold needed the full patience of 3 epochs before improving again (suggested patience 3): "
        "a longer --patience may pay off",
    ]


def test_thresholds_are_exclusive():
    assert flags(*entry(oscillation=0.5, gap=0.1, std=0.05), "f1", max_epochs=10, patience=3) == []
    assert "oscillates (index 0.51)" in flags(*entry(oscillation=0.51), "f1", 10, 3)[0]


def test_one_epoch_runs_are_not_told_to_lower_the_learning_rate():
    """With --epochs 1 the best epoch is the first whatever the learning rate: only the epoch limit is flagged."""
    assert flags(*entry(best=(1, 1, 1), epochs=(1, 1, 1)), "f1", max_epochs=1, patience=3) == [
        "hit the epoch limit in 3/3 folds: raise --epochs"
    ]
    mixed = flags(*entry(best=(1, 1, 4), epochs=(1, 4, 6)), "f1", max_epochs=6, patience=3)  # one fold stopped at 1
    assert mixed[0].startswith("best validation loss at epoch 1 in 1/2 folds")

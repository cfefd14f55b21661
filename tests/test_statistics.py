import warnings

import baycomp
import numpy as np
import pytest
from scipy import stats

from benchmark.evaluation.comparison import pairwise_comparison
from benchmark.evaluation.heldout import paired_against, ranking_transfer, transfer_verdict
from benchmark.evaluation.statistics import (
    bayesian_correlated_ttest,
    bootstrap_difference,
    corrected_ttest,
    friedman,
    holm,
    mean_ci,
    nemenyi_critical_difference,
)
from benchmark.report.plots import cd_groups


def test_corrected_ttest_by_hand():
    a = [0.91, 0.92, 0.90, 0.93, 0.91]
    b = [0.90] * 5
    # differences 0.01 0.02 0 0.03 0.01: mean 0.014, var (ddof 1) 1.3e-4,
    # corrected variance 1.3e-4 · (1/5 + 1/4) = 5.85e-5
    r = corrected_ttest(a, b)
    assert r.mean_difference == pytest.approx(0.014)
    assert r.t == pytest.approx(0.014 / np.sqrt(5.85e-5))
    assert r.p == pytest.approx(2 * stats.t.sf(0.014 / np.sqrt(5.85e-5), 4))
    half = stats.t.ppf(0.975, 4) * np.sqrt(5.85e-5)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.014 - half, 0.014 + half))
    # the naive paired t-test is over-confident: its p is smaller
    assert stats.ttest_rel(a, b).pvalue < r.p


def test_corrected_ttest_reproduces_scikit_learns_published_example():
    """scikit-learn's example "Statistical comparison of models using grid search" prints
    "Corrected t-value: 0.750, Corrected p-value: 0.227" (one-sided) for rbf vs linear SVC."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    X, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    rbf = cross_val_score(SVC(kernel="rbf", random_state=0), X, y, scoring="roc_auc", cv=cv)
    linear = cross_val_score(SVC(kernel="linear", random_state=0), X, y, scoring="roc_auc", cv=cv)
    r = corrected_ttest(rbf, linear, test_fraction=10 / 90)
    assert round(r.t, 3) == 0.750
    assert round(r.p / 2, 3) == 0.227


def test_friedman_matches_scipy_and_ranks_the_best_first():
    scores = {"a": [0.9, 0.91, 0.92, 0.9, 0.93], "b": [0.8, 0.85, 0.82, 0.81, 0.84], "c": [0.85, 0.8, 0.9, 0.85, 0.8]}
    r = friedman(scores)
    expected = stats.friedmanchisquare(*scores.values())
    assert r.statistic == pytest.approx(expected.statistic) and r.p == pytest.approx(expected.pvalue)
    assert r.average_ranks == {"a": 1.0, "b": pytest.approx(2.6), "c": pytest.approx(2.4)}
    losses = friedman({"x": [0.1, 0.2], "y": [0.3, 0.4]}, higher_is_better=False)
    assert losses.average_ranks == {"x": 1.0, "y": 2.0}


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5: q_0.05 = 1.960, 2.343, 2.569, 2.728 for k = 2..5
    for k, q in [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728)]:
        assert nemenyi_critical_difference(k, 10) == pytest.approx(q * np.sqrt(k * (k + 1) / 60), abs=2e-3)


def test_pairwise_comparison_of_ranked_entries():
    def entry(name, rank, f1):
        return {"name": name, "rank": rank, "status": "ok", "metrics": {"f1": {"folds": f1}}}

    entries = [entry("a", 1, [0.95, 0.96, 0.94]), entry("b", 2, [0.90, 0.92, 0.91]), entry("c", 3, [0.9, 0.9, 0.92])]
    records = [{"arch": "a", "n_fit": 90, "n_score": 50}]
    comp = pairwise_comparison(entries, records, "f1")
    assert comp["metric"] == "f1" and comp["best"] == "a"
    pair = comp["best_vs"]["b"]
    expected = corrected_ttest([0.95, 0.96, 0.94], [0.90, 0.92, 0.91], test_fraction=50 / 90)
    assert pair["p"] == pytest.approx(expected.p) and pair["mean_difference"] == pytest.approx(0.04)
    assert comp["p_values"]["b"]["c"] == comp["p_values"]["c"]["b"]
    assert comp["friedman"]["average_ranks"]["a"] == 1.0


def test_bayesian_correlated_ttest_is_the_corrected_student_posterior():
    a = [0.91, 0.92, 0.90, 0.93, 0.91]
    b = [0.90, 0.905, 0.91, 0.90, 0.90]
    # differences 0.01 0.015 -0.01 0.03 0.01: posterior t(4, mean, sqrt((1/5 + ρ/(1-ρ)) var)), ρ = 1/5
    d = np.subtract(a, b)
    posterior = stats.t(4, loc=d.mean(), scale=np.sqrt((1 / 5 + 0.25) * d.var(ddof=1)))
    r = bayesian_correlated_ttest(a, b, rope=0.01)
    assert r.worse == pytest.approx(posterior.cdf(-0.01), rel=1e-6)
    assert r.better == pytest.approx(posterior.sf(0.01), rel=1e-6)
    assert r.better + r.equivalent + r.worse == pytest.approx(1)
    # For a loss, lower is better: the same numbers read the other way round.
    flipped = bayesian_correlated_ttest(a, b, rope=0.01, higher_is_better=False)
    assert (flipped.better, flipped.worse) == pytest.approx((r.worse, r.better))
    # baycomp (its authors' group) gives the same posterior: ρ/(1 − ρ) = 1/(k − 1) = n_test/n_train for equal folds.
    assert baycomp.two_on_single(np.array(a), np.array(b), rope=0.01) == pytest.approx(
        (r.better, r.equivalent, r.worse), abs=1e-12
    )
    # With unequal folds it takes the measured n_test/n_train, as the t-tests do.
    wide = bayesian_correlated_ttest(a, b, test_fraction=0.5, rope=0.01)
    scale = np.sqrt((1 / 5 + 0.5) * d.var(ddof=1))
    assert wide.better == pytest.approx(stats.t(4, loc=d.mean(), scale=scale).sf(0.01), rel=1e-9)


def test_critical_difference_groups():
    ranks = {"a": 1.0, "b": 1.6, "c": 2.4, "d": 4.0, "e": 5.0}
    assert cd_groups(ranks, cd=1.5) == [["a", "b", "c"], ["d", "e"]]
    assert cd_groups(ranks, cd=0.5) == []  # every pair differs significantly


def test_repeated_cv_statistics_by_hand():
    """Bouckaert & Frank (2004): over the k·r folds of r repeats, t = mean(d) / sqrt((1/(k·r) + n2/n1) · σ̂²)
    with k·r − 1 degrees of freedom; the Bayesian correlated t-test has the same scale (baycomp's runs = r, ρ = 1/k)."""
    d = np.array([0.02, 0.01, 0.03, 0.00, 0.02, 0.01, 0.02, 0.03, 0.01, 0.00])  # k = 5 folds × r = 2 repeats
    b = np.full(10, 0.90)
    a = b + d
    # mean 0.015, σ̂² (ddof 1) = 1.1667e-4 exactly: Σ(d − 0.015)² = 0.00105, / 9
    variance = 0.00105 / 9
    t = 0.015 / np.sqrt((1 / 10 + 1 / 4) * variance)
    r = corrected_ttest(a, b, test_fraction=1 / 4)
    assert r.df == 9 and r.t == pytest.approx(t) and r.p == pytest.approx(2 * stats.t.sf(t, 9))
    entries = [
        {"name": "a", "rank": 1, "status": "ok", "metrics": {"f1": {"folds": list(a)}}},
        {"name": "b", "rank": 2, "status": "ok", "metrics": {"f1": {"folds": list(b)}}},
    ]
    comp = pairwise_comparison(entries, [{"n_fit": 400, "n_score": 100}], "f1", repeats=2)
    assert comp["test"] == "Bouckaert–Frank corrected repeated k-fold t-test" and comp["repeats"] == 2
    assert comp["best_vs"]["b"]["t"] == pytest.approx(t)
    # The posterior's scale uses n_test/n_train = 1/4 (baycomp with runs=2: ρ/(1 − ρ) = 1/(k − 1), k = 5).
    posterior = stats.t(9, loc=0.015, scale=np.sqrt((1 / 10 + 1 / 4) * variance))
    bayes = comp["bayesian"]["b"]
    assert bayes["worse"] == pytest.approx(posterior.cdf(-0.01), rel=1e-6)
    assert bayes["better"] == pytest.approx(posterior.sf(0.01), rel=1e-6)
    assert baycomp.two_on_single(a, b, rope=0.01, runs=2) == pytest.approx(
        (bayes["better"], bayes["equivalent"], bayes["worse"]), abs=1e-12
    )


def test_the_leaderboard_interval_carries_the_same_correction_by_hand():
    values = [0.90, 0.92, 0.94, 0.91, 0.93]  # mean 0.92, s² = 2.5e-4
    mean, low, high = mean_ci(values, test_fraction=1 / 4)
    half = stats.t.ppf(0.975, 4) * np.sqrt(2.5e-4 * (1 / 5 + 1 / 4))
    assert (mean, low, high) == pytest.approx((0.92, 0.92 - half, 0.92 + half))
    plain = stats.t.ppf(0.975, 4) * np.sqrt(2.5e-4 / 5)
    assert high - low > 2 * plain  # wider than the naive t-interval over correlated folds


def test_holm_adjustment_by_hand():
    # sorted 0.01 < 0.03 < 0.04: × 3, × 2, × 1, made monotone: 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert holm({"ab": 0.04, "ac": 0.01, "bc": 0.03}) == {"ab": 0.06, "ac": 0.03, "bc": 0.06}
    assert holm({"x": 0.6, "y": 0.5}) == {"x": 1.0, "y": 1.0}  # capped at 1


def _test_split(n: int = 1000, seed: int = 0):
    """Labels of ``n`` test images and a maker of probabilities whose F1 at 0.5 rises with ``skill``: every model
    shares one noise term (the images that are hard for one are hard for all) and has some of its own."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    shared = rng.normal(0, 1, n)

    def model(skill):
        return 1 / (1 + np.exp(-(skill * (2 * labels - 1) + shared + 0.5 * rng.normal(0, 1, n))))

    return labels, model


def test_rank_agreement_on_constructed_cases():
    labels, model = _test_split()
    test = {"strong": model(2.0), "middle": model(1.2), "weak": model(0.6)}
    agree = ranking_transfer({"strong": 0.95, "middle": 0.90, "weak": 0.80}, test, labels, "f1", n_boot=300)
    assert agree["kendall_tau"] == 1.0 and agree["spearman_rho"] == 1.0 and agree["verdict"] == "agree"
    assert agree["kendall_tau_ci"][0] > 0 and agree["same_winner"] and agree["cv_winner"] == "strong"
    assert agree["gap"] == pytest.approx(np.subtract(agree["test"], agree["cv"]))
    # both others are significantly worse than the CV winner: that is no reason to disagree
    assert [(c["architecture"], c["p_holm"] < 0.05, c["beats_cv_winner"]) for c in agree["paired"]] == [
        ("middle", True, False),
        ("weak", True, False),
    ]
    # a true reversal: the CV winner is the weakest on 1,000 test images, beaten by both others after Holm
    reversed_ = ranking_transfer({"weak": 0.95, "middle": 0.90, "strong": 0.80}, test, labels, "f1", n_boot=300)
    assert reversed_["kendall_tau"] == -1.0 and reversed_["verdict"] == "disagree" and not reversed_["same_winner"]
    assert reversed_["kendall_tau_ci"][1] < 0
    test_f1 = dict(zip(reversed_["architectures"], reversed_["test"], strict=True))
    for c in reversed_["paired"]:
        assert c["beats_cv_winner"] and c["p_holm"] < 0.05 and c["ci"][0] > 0
        assert c["difference"] == pytest.approx(test_f1[c["architecture"]] - test_f1["weak"])
    with warnings.catch_warnings():  # τ undefined in every resample: no "All-NaN slice" warning reaches the user
        warnings.simplefilter("error")
        tied = ranking_transfer(
            {"strong": 0.95, "copy": 0.90}, {"strong": test["strong"], "copy": test["strong"]}, labels, "f1"
        )
    assert np.isnan(tied["kendall_tau"]) and tied["verdict"] == "tied"  # not 'agree': the test split cannot order them
    assert tied["paired"][0]["difference"] == 0 and tied["paired"][0]["p"] == 1.0


def test_pure_noise_is_unresolved_not_disagree():
    """Eight equally good models (the main job's situation: test F1s within 0.01): the test split puts another
    first and τ ≤ 0 — what the old rule called DISAGREE — yet nothing there is evidence either way."""
    labels, model = _test_split()
    names = [f"m{i}" for i in range(8)]
    cv = dict(zip(names, np.linspace(0.97, 0.94, 8), strict=True))
    r = ranking_transfer(cv, {n: model(1.5) for n in names}, labels, "f1", n_boot=300)
    assert not r["same_winner"] and r["kendall_tau"] <= 0  # the old rule's two triggers
    assert r["kendall_tau_ci"][0] < 0 < r["kendall_tau_ci"][1]
    assert len(r["paired"]) == 7 and not any(c["beats_cv_winner"] for c in r["paired"])
    assert all(c["ci"][0] < 0 < c["ci"][1] for c in r["paired"])
    assert r["verdict"] == "unresolved"


def test_a_different_winner_inside_the_noise_still_agrees():
    """Two equal models at the top, two clearly worse: whichever of the two the test split puts first, the
    CV order holds (τ's interval above 0) and the CV winner is not beaten."""
    labels, model = _test_split()
    test = {"a": model(2.0), "b": model(2.0), "c": model(1.0), "d": model(0.5)}
    orders = ({"a": 0.97, "b": 0.96, "c": 0.9, "d": 0.8}, {"b": 0.97, "a": 0.96, "c": 0.9, "d": 0.8})
    results = [ranking_transfer(cv, test, labels, "f1", n_boot=300) for cv in orders]
    assert [r["verdict"] for r in results] == ["agree", "agree"]
    assert all(r["kendall_tau_ci"][0] > 0 and not any(c["beats_cv_winner"] for c in r["paired"]) for r in results)
    assert {r["same_winner"] for r in results} == {True, False}  # one of the two CV winners is not the test's


def test_the_comparisons_against_the_cv_winner_are_holm_adjusted_by_hand():
    """99 shared resamples × 4 architectures, the CV winner first, built so each difference has a known count of
    replicates at or below zero: b 2, c 0, d 10. Raw p = 2 (count + 1) / 100: b 0.06, c 0.02, d 0.22.
    Holm over the 3 comparisons: c 0.02 · 3 = 0.06, b max(0.06, 0.06 · 2) = 0.12, d max(0.12, 0.22 · 1) = 0.22."""
    base = np.full(99, 0.80)
    resampled = np.column_stack([base] + [base + np.r_[np.full(k, -0.01), np.full(99 - k, 0.02)] for k in (2, 0, 10)])
    scores = np.array([0.80, 0.82, 0.82, 0.82])
    paired = paired_against(["w", "b", "c", "d"], 0, scores, resampled, sign=1)
    assert [c["architecture"] for c in paired] == ["b", "c", "d"]
    assert [c["p"] for c in paired] == pytest.approx([0.06, 0.02, 0.22])
    assert [c["p_holm"] for c in paired] == pytest.approx([0.12, 0.06, 0.22])
    assert [c["difference"] for c in paired] == pytest.approx([0.02, 0.02, 0.02])
    # c's raw p is below 0.05, but not after Holm: nobody beats the CV winner, and τ alone cannot say disagree
    assert not any(c["beats_cv_winner"] for c in paired)
    assert transfer_verdict(0.2, [-0.5, 0.8], paired) == "unresolved"
    assert transfer_verdict(0.2, [-0.5, 0.8], [{**paired[1], "beats_cv_winner": True}]) == "disagree"
    assert transfer_verdict(-0.8, [-1.0, -0.2], paired) == "disagree"
    assert transfer_verdict(0.8, [0.2, 1.0], paired) == "agree"
    # lower is better (log loss): a higher score is no win even when significant
    lower = paired_against(["w", "c"], 0, scores[:2], resampled[:, [0, 2]], sign=-1, alpha=0.05)
    assert lower[0]["p_holm"] == pytest.approx(0.02) and not lower[0]["beats_cv_winner"]


def test_bootstrap_difference_by_hand():
    # 5 of 100 replicates below zero, one exactly at zero (counted on both sides): p = 2 · (6 + 1) / 101
    low, high, p = bootstrap_difference(np.r_[np.full(5, -0.01), 0.0, np.full(94, 0.02), np.nan])
    assert p == pytest.approx(14 / 101) and (low, high) == pytest.approx((-0.01, 0.02))
    assert bootstrap_difference(np.zeros(50))[2] == 1.0  # identical predictions: no evidence at all
    assert bootstrap_difference(np.full(999, 0.01))[2] == pytest.approx(2 / 1000)  # never 0 from a finite bootstrap

import numpy as np
import pytest
from scipy import stats

from benchmark.comparison import pairwise_comparison
from benchmark.heldout import ranking_transfer
from benchmark.plots import cd_groups
from benchmark.statistics import (
    bayesian_correlated_ttest,
    corrected_ttest,
    friedman,
    holm,
    mean_ci,
    nemenyi_critical_difference,
)


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


def test_critical_difference_groups():
    ranks = {"a": 1.0, "b": 1.6, "c": 2.4, "d": 4.0, "e": 5.0}
    assert cd_groups(ranks, cd=1.5) == [["a", "b", "c"], ["d", "e"]]
    assert cd_groups(ranks, cd=0.5) == []  # every pair differs significantly


def test_repeated_cv_statistics_by_hand():
    """Bouckaert & Frank (2004): over the k·r folds of r repeats, t = mean(d) / sqrt((1/(k·r) + n2/n1) · σ̂²)
    with k·r − 1 degrees of freedom; baycomp's correlated t-test gets runs = r (ρ = 1/k)."""
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
    # baycomp with runs=2: the posterior's scale uses ρ = 1/k = 1/5 for the n = 10 differences.
    posterior = stats.t(9, loc=0.015, scale=np.sqrt((1 / 10 + 0.2 / 0.8) * variance))
    bayes = comp["bayesian"]["b"]
    assert bayes["worse"] == pytest.approx(posterior.cdf(-0.01), rel=1e-6)
    assert bayes["better"] == pytest.approx(posterior.sf(0.01), rel=1e-6)


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


def test_rank_agreement_on_constructed_cases():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    noise = rng.normal(0, 1, 400)

    def model(skill):  # probabilities whose ROC-AUC rises with skill
        return 1 / (1 + np.exp(-(skill * (2 * labels - 1) + noise)))

    test = {"strong": model(2.0), "middle": model(1.0), "weak": model(0.3)}
    agree = ranking_transfer({"strong": 0.95, "middle": 0.90, "weak": 0.80}, test, labels, "roc_auc", n_boot=200)
    assert agree["kendall_tau"] == 1.0 and agree["spearman_rho"] == 1.0 and agree["verdict"] == "agree"
    assert agree["kendall_tau_ci"][0] > 0 and agree["same_winner"]
    assert agree["gap"] == pytest.approx(np.subtract(agree["test"], agree["cv"]))
    reversed_ = ranking_transfer({"weak": 0.95, "middle": 0.90, "strong": 0.80}, test, labels, "roc_auc", n_boot=200)
    assert reversed_["kendall_tau"] == -1.0 and reversed_["verdict"] == "disagree" and not reversed_["same_winner"]
    assert reversed_["kendall_tau_ci"][1] < 0
    tied = ranking_transfer(
        {"strong": 0.95, "copy": 0.90}, {"strong": test["strong"], "copy": test["strong"]}, labels, "roc_auc"
    )
    assert np.isnan(tied["kendall_tau"]) and tied["verdict"] == "tied"  # not 'agree': the test split cannot order them

"""Evaluation, statistics: is one architecture really better than another?

Fold scores of two architectures are paired (same folds) and correlated (the
training sets overlap), so a plain paired t-test over folds is over-confident.
These are the corrections the literature recommends for k-fold CV:

- :func:`corrected_ttest`: Nadeau & Bengio (2003) corrected resampled t-test;
- :func:`friedman`: Friedman's test over all architectures, with average ranks;
- :func:`nemenyi_critical_difference`: Demšar (2006)'s critical difference
  between average ranks (the CD diagram);
- :func:`bayesian_correlated_ttest`: Corani & Benavoli (2015)'s Bayesian
  correlated t-test, its Student-t posterior in closed form (checked against baycomp in the tests).

With k = 5 folds every test has little power: "not significant" is weak evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedTest:
    """A's score minus B's, over paired folds."""

    mean_difference: float
    t: float
    p: float  # two-sided
    ci_low: float  # corrected confidence interval of the mean difference
    ci_high: float
    df: int


def corrected_ttest(a, b, test_fraction: float | None = None, confidence: float = 0.95) -> PairedTest:
    """Nadeau–Bengio corrected resampled t-test of ``a − b`` over paired folds.

    The variance of the fold differences is inflated by ``1/n + n_test/n_train``
    instead of the naive ``1/n``; ``test_fraction`` is ``n_test / n_train``, by
    default ``1 / (n − 1)`` as in one k-fold cross-validation. Given the n = k·r folds
    of r repeats, this is the corrected repeated k-fold cv test of Bouckaert & Frank
    (2004), with n − 1 degrees of freedom.

    >>> r = corrected_ttest([0.91, 0.92, 0.90, 0.93, 0.91], [0.90, 0.90, 0.90, 0.90, 0.90])
    >>> round(r.mean_difference, 3), round(r.t, 3), round(r.p, 3)
    (0.014, 1.83, 0.141)
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    k = len(d)
    mean, se = float(np.mean(d)), _corrected_scale(d, test_fraction)
    if se == 0:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), k - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1) * se)
    return PairedTest(mean, float(t), p, mean - half, mean + half, k - 1)


def _corrected_scale(d: np.ndarray, test_fraction: float | None) -> float:
    """The corrected standard error of the mean of the fold differences ``d``: ``sqrt(s² (1/n + n_test/n_train))``,
    ``test_fraction`` = n_test/n_train, 1/(n − 1) when None (one k-fold). The t-tests, the Bayesian test and
    :func:`mean_ci` all use it."""
    ratio = 1 / (len(d) - 1) if test_fraction is None else test_fraction
    return math.sqrt(np.var(d, ddof=1) * (1 / len(d) + ratio))


@dataclass(frozen=True)
class FriedmanResult:
    statistic: float
    p: float
    average_ranks: dict[str, float]  # 1 = best
    critical_difference: float  # Nemenyi, at alpha


def friedman(scores: dict[str, list[float]], higher_is_better: bool = True, alpha: float = 0.05) -> FriedmanResult:
    """Friedman's test over folds (blocks) and architectures (treatments), as
    :func:`scipy.stats.friedmanchisquare`, plus each architecture's average rank
    and the Nemenyi critical difference between average ranks."""
    names = list(scores)
    matrix = np.array([scores[n] for n in names], dtype=float)  # architectures × folds
    ranks = stats.rankdata(-matrix if higher_is_better else matrix, axis=0)  # 1 = best in each fold
    statistic, p = stats.friedmanchisquare(*matrix) if len(names) >= 3 else (float("nan"), float("nan"))
    return FriedmanResult(
        statistic=float(statistic),
        p=float(p),
        average_ranks={n: float(r) for n, r in zip(names, ranks.mean(axis=1), strict=True)},
        critical_difference=nemenyi_critical_difference(len(names), matrix.shape[1], alpha),
    )


def nemenyi_critical_difference(n_models: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demšar (2006): two average ranks differ significantly when they are more than
    ``q_alpha · sqrt(k (k + 1) / (6 N))`` apart; ``q_alpha`` is the studentized range
    quantile divided by √2.

    >>> round(nemenyi_critical_difference(4, 14), 3)  # Demšar's q_0.05 = 2.569 for k = 4
    1.254
    """
    if n_models < 2:
        return float("nan")
    q = stats.studentized_range.ppf(1 - alpha, n_models, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_models * (n_models + 1) / (6 * n_blocks)))


ROPE = 0.01  # region of practical equivalence: differences under one point of F1 (or AUC…) do not matter


@dataclass(frozen=True)
class BayesianTest:
    """Posterior probabilities that A is better, practically equivalent (within the rope), or B is better."""

    better: float
    equivalent: float
    worse: float
    rope: float


def bayesian_correlated_ttest(
    a, b, test_fraction: float | None = None, rope: float = ROPE, higher_is_better: bool = True
) -> BayesianTest:
    """Bayesian correlated t-test of A against B over paired folds (Corani & Benavoli 2015; Benavoli et al. 2017).

    Under a flat prior the posterior of the mean difference is a Student t with n − 1 degrees of freedom,
    centred on the mean fold difference, whose scale is the corrected standard error of the t-tests (the
    same ``test_fraction`` = n_test/n_train); it answers "how probable is it that A is better by more than
    the rope?" directly, instead of a p-value. baycomp computes the same posterior with ρ/(1 − ρ) = 1/(k − 1),
    which equals n_test/n_train for equal folds.

    >>> r = bayesian_correlated_ttest([0.91, 0.92, 0.90, 0.93, 0.91], [0.90, 0.905, 0.91, 0.90, 0.90])
    >>> round(r.better, 3), round(r.equivalent, 3), round(r.worse, 3)
    (0.539, 0.414, 0.047)
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d if higher_is_better else -d
    mean, scale = float(np.mean(d)), _corrected_scale(d, test_fraction)
    if scale == 0:  # every fold differs by the same amount: the posterior is a point
        better, worse = float(mean > rope), float(mean < -rope)
    else:
        posterior = stats.t(len(d) - 1, loc=mean, scale=scale)
        better, worse = float(posterior.sf(rope)), float(posterior.cdf(-rope))
    return BayesianTest(better, 1 - better - worse, worse, rope)


def mean_ci(values, test_fraction: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over folds and its confidence interval, corrected as the t-tests are (Nadeau & Bengio 2003).

    Fold scores are correlated (the training sets overlap), so the variance of their mean is taken
    as ``s² · (1/n + n_test/n_train)`` instead of ``s²/n``; with n = k·r folds of r repeats this is
    Bouckaert & Frank's (2004) correction. ``test_fraction`` is n_test/n_train (1/(k−1) for k folds);
    t-distribution with n − 1 degrees of freedom.

    >>> [round(v, 4) for v in mean_ci([0.9, 0.92, 0.94], test_fraction=0.5)]
    [0.92, 0.8414, 0.9986]
    """
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(arr) - 1) * _corrected_scale(arr, test_fraction))
    return mean, mean - half, mean + half


def holm(p_values: dict) -> dict:
    """Holm's step-down adjustment of a family of p-values (keys → p), controlling the family-wise error.

    >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
    {'a': 0.03, 'b': 0.06, 'c': 0.06}
    """
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[key]))
        adjusted[key] = round(running, 12)
    return {key: adjusted[key] for key in p_values}


def bootstrap_difference(replicates, confidence: float = 0.95) -> tuple[float, float, float]:
    """Percentile interval and two-sided p-value of a paired difference, from its bootstrap replicates.

    p is twice the smaller share of replicates on either side of zero (a replicate at zero counts on
    both), with the +1 of Davison & Hinkley (1997) so that a finite bootstrap never claims p = 0, capped
    at 1: the p at which the percentile interval starts to exclude zero. NaN replicates (a resample on
    which the metric is undefined) are left out.

    >>> low, high, p = bootstrap_difference(np.r_[np.full(95, 0.02), np.full(5, -0.01)])
    >>> round(low, 3), round(high, 3), round(p, 4)  # 5 of 100 replicates at or below 0: p = 2 · 6 / 101
    (-0.01, 0.02, 0.1188)
    """
    d = np.asarray(replicates, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    low, high = np.percentile(d, [50 - 50 * confidence, 50 + 50 * confidence])
    return float(low), float(high), float(min(1.0, 2 * (tail + 1) / (len(d) + 1)))

"""Evaluation: per-fold scores and curve statistics (:mod:`.metrics`), intervals and tests
(:mod:`.statistics`), the ranking and pairwise comparison (:mod:`.comparison`), loss-curve flags
(:mod:`.diagnostics`), the ranking's transfer to the held-out split (:mod:`.heldout`) and a run's results
read back (:mod:`.results`)."""

from benchmark.lazy import attach

__getattr__, __all__ = attach(
    __name__,
    {
        "comparison": ["ArchOutcome", "best_fold", "folds_table", "pairwise_comparison", "ranked"],
        "heldout": ["cv_means", "heldout_scores", "heldout_transfer", "oof_scores", "read_all", "refit_against_folds"],
        "metrics": ["best_epoch", "default_rank_by", "fold_metrics", "metric_names"],
        "results": ["read"],
    },
)

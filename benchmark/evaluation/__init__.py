"""Evaluation: per-fold scores and curve statistics (:mod:`.metrics`), intervals and tests
(:mod:`.statistics`), the ranking and pairwise comparison (:mod:`.comparison`), loss-curve flags
(:mod:`.diagnostics`) and the ranking's transfer to the held-out split (:mod:`.heldout`)."""

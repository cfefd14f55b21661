"""Reporting: the leaderboard in words (:mod:`.leaderboard`), the report's sections (:mod:`.sections`), figures
(:mod:`.plots`), markdown and HTML (:mod:`.render`, :mod:`.document`) and ``benchmark compare``
(:mod:`.compare`). It reads a run's results and formats; it trains nothing."""

from benchmark.lazy import attach

__getattr__, __all__ = attach(
    __name__,
    {
        "card": ["model_card", "write_card"],
        "compare": ["write_compare"],
        "document": ["write_report"],
        "leaderboard": ["leaderboard_md", "leaderboard_text"],
    },
)

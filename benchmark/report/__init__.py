"""Reporting: the leaderboard in words (:mod:`.leaderboard`), the report's sections (:mod:`.sections`), figures
(:mod:`.plots`), markdown and HTML (:mod:`.render`, :mod:`.document`) and ``benchmark compare``
(:mod:`.compare`). It reads a run folder and formats; it trains nothing."""

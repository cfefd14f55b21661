"""Storage: the run folder (:mod:`.runfolder`), atomic files (:mod:`.files`) and the typed read model
of a run's results (:mod:`.results`): what every stage reads and writes."""

from benchmark.lazy import attach

__getattr__, __all__ = attach(
    __name__,
    {
        "files": ["read_json", "write_json"],
        "results": ["ArchResult", "RunResults", "Status", "parse"],
        "runfolder": ["FORMAT", "RESULTS_FORMAT", "RunFolder", "predictions_table", "probabilities_of"],
    },
)

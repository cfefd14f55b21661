"""Data: the images of a folder, listed, decoded and cached (:mod:`.images`), and the folds (:mod:`.splits`)."""

from benchmark.lazy import attach

__getattr__, __all__ = attach(
    __name__,
    {
        "images": [
            "Dataset",
            "Images",
            "class_counts",
            "discover",
            "file_table",
            "fingerprint",
            "load_images",
            "same_bytes",
            "table_diff",
            "warn_skipped",
        ],
        "splits": ["Fold", "NestedStratifiedKFold", "file_groups", "load_splits", "save_splits", "straddling"],
    },
)

"""Inference: saved fold models at work on new images: the held-out test split's predictions and TTA
(:mod:`.predict`) and Grad-CAM (:mod:`.gradcam`)."""

from benchmark.lazy import attach

__getattr__, __all__ = attach(
    __name__,
    {
        "gradcam": ["explain_heldout"],
        "predict": ["model_output", "predict_heldout"],
    },
)

"""Inference: saved fold models at work on new images: the held-out test split's predictions and TTA
(:mod:`.predict`) and Grad-CAM (:mod:`.gradcam`)."""

"""Training: model assembly and one fold's fit (:mod:`.fit`), the Keras backend (:mod:`.backend`),
where folds run (:mod:`.execution`) and a model's forward cost (:mod:`.flops`).

This file holds the settings the stage defines, light to import (no Keras): the settings check them.
"""

# Random ranges per level (fractions as Keras's preprocessing layers take them). No flips:
# a heart on the right is not a normal X-ray. "strong" doubles the geometry and adds
# brightness, for scanners and exposures the training split does not show.
AUGMENTATIONS = {
    "none": {},
    "light": {"rotation": 0.03, "zoom": 0.1, "translation": 0.05, "contrast": 0.1},
    "strong": {"rotation": 0.06, "zoom": 0.2, "translation": 0.1, "contrast": 0.3, "brightness": 0.2},
}

STRATEGIES = ("auto", "none", "mirrored")  # multi-GPU data parallelism (benchmark.training.backend)

"""Cross-validation benchmarking of CNN image classifiers.

Data flows one way through the stages, each a subpackage that imports only those above it and
whose ``__init__`` names its public face (what the driver imports)::

    store/       the run folder, atomic files, the typed read model of a run's results
    data/        images (listing, decoding, cache) and splits (folds, groups)
    training/    one fold's fit, the Keras backend, where folds run, a model's FLOPs; their settings
    inference/   saved fold models at work: held-out predictions, TTA, Grad-CAM
    evaluation/  metrics, statistics, ranking and comparison, curve flags, held-out scores and transfer,
                 a run's results read back (``read``)
    report/      leaderboard, sections, plots, markdown and HTML; ``benchmark compare``
    tracking/    TensorBoard and MLflow mirrors of the run folder

On top: ``config`` (the settings, grouped by role), ``runner`` (the driver of ``benchmark run``),
``progress`` (its terminal line), ``console``, ``cli`` (the command line) and ``api`` (``benchmark.run``,
``benchmark.load``). Architectures live in the top-level ``architectures`` package.
"""

import os

from benchmark.errors import UsageError  # noqa: F401 (benchmark.UsageError, as it always was)

__version__ = "0.1.0"

# GPU memory is taken as needed, not grabbed at start (JAX would take 75 % of the GPU), so that
# several trainings (--jobs N) share one GPU. Set before any backend starts, which reads it once;
# a value the user set wins. TensorFlow's memory growth is set in benchmark.training.backend.setup.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def __getattr__(name: str):
    # The Python API (benchmark.run, benchmark.load, benchmark.Results), imported on first use so that
    # `import benchmark` (and the command line) stays light.
    if name in ("run", "load", "Results"):
        from benchmark import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")

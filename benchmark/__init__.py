"""Cross-validation benchmarking of CNN image classifiers.

Data flows one way through six stages; every module's docstring names its stage::

    1 data        data.py
    2 splits      splits.py
    3 training    training.py (one fold), backend.py, execution.py (where folds run)
    4 evaluation  metrics.py, statistics.py, comparison.py, diagnostics.py, heldout.py
    5 run folder  runfolder.py (every path of the run folder)
    6 reporting   leaderboard.py, sections.py, render.py, plots.py, gradcam.py, report.py

``runner`` is the driver, ``progress`` its terminal line, ``cli`` the command line, ``api``
the Python API (``benchmark.run``, ``benchmark.load``), ``config`` the settings and ``flops`` a
model's forward cost (``benchmark list``).
"""

import os

__version__ = "0.1.0"

# GPU memory is taken as needed, not grabbed at start (JAX would take 75 % of the GPU), so that
# several trainings (--jobs N) share one GPU. Set before any backend starts, which reads it once;
# a value the user set wins. TensorFlow's memory growth is set in benchmark.backend.setup.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def __getattr__(name: str):
    # The Python API (benchmark.run, benchmark.load, benchmark.Results), imported on first use so that
    # `import benchmark` (and the command line) stays light.
    if name in ("run", "load", "Results"):
        from benchmark import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


class UsageError(Exception):
    """A mistake the user can fix (bad option, bad data folder). The CLI prints it
    as one paragraph and exits with status 2, without a traceback."""

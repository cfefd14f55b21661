"""Cross-validation benchmarking of CNN image classifiers.

Data flows one way, one module per stage::

    data → splits → training → metrics → comparison → output

``runner`` ties the stages together and ``cli`` is the command line.
"""

import os

__version__ = "0.1.0"

# GPU memory is taken as needed, not grabbed at start (JAX would take 75 % of the GPU), so that
# several trainings (--jobs N) share one GPU. Set before any backend starts, which reads it once;
# a value the user set wins. TensorFlow's memory growth is set in benchmark.backend.setup.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class UsageError(Exception):
    """A mistake the user can fix (bad option, bad data folder). The CLI prints it
    as one paragraph and exits with status 2, without a traceback."""

"""Cross-validation benchmarking of CNN image classifiers.

Data flows one way, one module per stage::

    data → splits → training → metrics → comparison → output

``runner`` ties the stages together and ``cli`` is the command line.
"""

__version__ = "0.1.0"


class UsageError(Exception):
    """A mistake the user can fix (bad option, bad data folder). The CLI prints it
    as one paragraph and exits with status 2, without a traceback."""

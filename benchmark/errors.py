"""The errors a user can fix."""


class UsageError(Exception):
    """A mistake the user can fix (bad option, bad data folder). The CLI prints it
    as one paragraph and exits with status 2, without a traceback."""

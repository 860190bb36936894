"""One exception tree: every error an operator may see is a MirrorError.

Its message is a single line that names what was wrong and where; the CLI
prints it as it is, never a traceback.
"""


class MirrorError(Exception):
    """An error with a one-line, operator-facing message."""


class ConfigError(MirrorError):
    """The configuration (file or environment) is invalid."""


class DatabaseError(MirrorError):
    """The database cannot be reached or has an unexpected schema."""

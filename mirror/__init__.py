"""fedimirror: mirror archived Lemmy discussions back into the fediverse."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedimirror")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]

"""The installed advlab version."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("advlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

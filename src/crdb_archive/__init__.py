"""crdb-archive: keep CockroachDB backups restorable for decades."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crdb-archive")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

"""crdb-archive: keep CockroachDB backups restorable for decades."""

# The one place the version is written; pyproject.toml reads it from here. A literal, not
# importlib.metadata: looking up installed metadata costs every command ~20 ms at start-up.
__version__ = "0.2.0"

__all__ = ["__version__"]

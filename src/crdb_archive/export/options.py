"""What an export archive needs beyond its source and destination.

In a module of its own: a command that only names these options (archive of a backup, a job
spec) does not load DuckDB and sqlglot, which the export archiving itself needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportOptions:
    """What an export archive needs beyond the source and destination."""

    schema: Path | None = None  # SHOW CREATE ALL TABLES output; required
    as_of: str = "latest"  # latest, or one of the RESOLVED timestamps
    allow_gaps: bool = False
    table: str | None = None  # the table of an EXPORT, when the schema has several
    memory_limit: str = "1GB"  # DuckDB's, for the snapshot; it spills to disk beyond

    @property
    def given(self) -> list[str]:
        """The options set away from their defaults, as the command line names them."""
        named = [("--schema", self.schema is not None), ("--as-of", self.as_of != "latest"),
                 ("--allow-gaps", self.allow_gaps), ("--table", self.table is not None)]
        return [flag for flag, set_ in named if set_]

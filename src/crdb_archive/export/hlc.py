"""CockroachDB HLC timestamps as changefeeds write them: in file names, metadata and RESOLVED files.

An HLC timestamp is a wall time in nanoseconds since the Unix epoch plus a logical counter.
Changefeeds print it three ways, all parsed here:

- ``updated`` / ``mvcc_timestamp`` fields: ``hlc.Timestamp.AsOfSystemTime()``, that is
  ``"<wall>.<logical as 10 digits>"`` (cockroach ``pkg/util/hlc/timestamp.go``);
- RESOLVED bodies: ``eval.TimestampToDecimalDatum`` printed as a decimal, the same digits with
  the fraction possibly shorter (``encoder_json.go`` ``EncodeResolvedTimestamp``);
- file names: ``cloudStorageFormatTime``, 33 digits ``YYYYMMDDHHMMSS`` + 9 of nanoseconds + 10
  of logical (``sink_cloudstorage.go``).

Raises nothing itself but :class:`ValueError` from the parsers; callers turn it into the error
that names the file or the option.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from crdb_archive.times import utc_iso_nanos

_DECIMAL = re.compile(r"^(\d{1,20})(?:\.(\d{1,10}))?$")
_FILE_TS = re.compile(r"^(\d{14})(\d{9})(\d{10})$")
_NANOS = 1_000_000_000


@dataclass(frozen=True, order=True)
class Hlc:
    """One HLC timestamp; ordering is CockroachDB's (wall, then logical)."""

    wall: int
    logical: int = 0

    @classmethod
    def parse_decimal(cls, text: str) -> Hlc:
        """``"1700000000000000000.0000000002"`` (or without a fraction); raises ValueError."""
        match = _DECIMAL.match(text)
        if match is None:
            raise ValueError(f"not an HLC timestamp: {text!r}")
        fraction = (match.group(2) or "").ljust(10, "0")
        return cls(int(match.group(1)), int(fraction))

    @classmethod
    def parse_file_time(cls, text: str) -> Hlc:
        """The 33-digit form of file names; raises ValueError."""
        match = _FILE_TS.match(text)
        if match is None:
            raise ValueError(f"not a 33-digit changefeed file time: {text!r}")
        try:
            moment = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError as exc:
            raise ValueError(f"not a 33-digit changefeed file time: {text!r}") from exc
        seconds = calendar.timegm(moment.timetuple())
        return cls(seconds * _NANOS + int(match.group(2)), int(match.group(3)))

    @classmethod
    def parse_user(cls, text: str) -> Hlc:
        """What a user may type for --as-of: the decimal form or the 33-digit file form."""
        text = text.strip()
        if _FILE_TS.match(text):
            return cls.parse_file_time(text)
        return cls.parse_decimal(text)

    def decimal(self) -> str:
        """``AsOfSystemTime()`` form, usable in ``AS OF SYSTEM TIME``."""
        return f"{self.wall}.{self.logical:010d}"

    def to_json(self) -> dict[str, str]:
        """``{"hlc", "time"}``: a snapshot time as crdb-archive.json and ``--json`` write it."""
        return {"hlc": self.decimal(), "time": self.iso()}

    def file_time(self) -> str:
        """The 33-digit form the sink puts in file names."""
        seconds, nanos = divmod(self.wall, _NANOS)
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        return f"{moment:%Y%m%d%H%M%S}{nanos:09d}{self.logical:010d}"

    def iso(self) -> str:
        """The wall time as RFC 3339 with nanoseconds, for people."""
        return utc_iso_nanos(self.wall)

"""Fixity records: one small new object per check of a bundle, kept beside the bundles.

A record is written at ``.crdb-archive/fixity/<bundle key>/<time>-<result>-<random>.json``
(``<bundle key>`` is ``<name>`` or ``<name>.tar``; ``<time>`` UTC as ``YYYYMMDDTHHMMSS.ffffffZ``,
so that names sort by time; ``<result>`` ``ok``, ``damaged`` or ``limited``) with the storage's
conditional create: a record is never rewritten, and never inside a bundle, so checks go on
under Object Lock, where a bundle never changes once written. Its name alone tells when a
bundle was last checked and how that went, so one listing of the records answers for every
bundle without reading any of them; the content holds the details (mode, problems, bytes read,
the tool, the signature) for people and audits.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive import __version__
from crdb_archive.errors import ConditionFailed
from crdb_archive.storage.base import Storage
from crdb_archive.times import basic, utc_iso

if TYPE_CHECKING:
    from crdb_archive.bundle.verify import VerifyReport

FIXITY_DIR = ".crdb-archive/fixity"
RECORD_FORMAT = "crdb-archive-fixity"
Result = Literal["ok", "damaged", "limited"]
Origin = Literal["audit", "run"]

# How crdb_archive.times.basic(..., fraction="microseconds") writes a record's time, read back.
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)-(ok|damaged|limited)-([0-9a-f]{8})\.json")
# A record stays small whatever a damaged bundle holds: the first problems, each cut short.
MAX_LISTED_PROBLEMS = 5
MAX_DETAIL = 300
FUTURE_SKEW = dt.timedelta(days=1)


@dataclass(frozen=True)
class Mark:
    """What a record's name says: which bundle, when, and the result."""

    bundle: str  # the bundle's key below the destination: name or name.tar
    time: dt.datetime
    result: Result
    key: str  # the record's key

    @property
    def ok(self) -> bool:
        """Whether the check found the bundle sound (a limited check included)."""
        return self.result != "damaged"


@dataclass(frozen=True)
class FixityRecord:
    """One check of one bundle, as it is stored."""

    bundle: str
    time: dt.datetime
    result: Result
    origin: Origin
    mode: str  # blake3, all (every SHA-256 too), fast (presence and sizes)
    problems: int
    first_problems: list[dict[str, str]] = field(default_factory=list)
    files: int = 0
    bytes_read: int = 0
    signature: dict[str, Any] | None = None
    note: str | None = None  # why the check was limited, what error stood in for a report

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "format_version": 1,
            "bundle": self.bundle,
            "time": utc_iso(self.time),
            "result": self.result,
            "ok": self.result != "damaged",
            "origin": self.origin,
            "mode": self.mode,
            "problems": self.problems,
            "first_problems": self.first_problems,
            "files": self.files,
            "bytes_read": self.bytes_read,
            "signature": self.signature,
            "note": self.note,
            "tool": f"crdb-archive {__version__}",
        }


def record_of(bundle: str, report: VerifyReport, origin: Origin, *,
              limited: str | None = None, now: dt.datetime | None = None) -> FixityRecord:
    """The record of a verification's report; ``limited`` says why it checked less than all."""
    result: Result = "damaged" if not report.ok else ("limited" if limited else "ok")
    signature = report.signature
    return FixityRecord(
        bundle=bundle,
        time=now or dt.datetime.now(dt.UTC),
        result=result,
        origin=origin,
        mode=report.mode,
        problems=len(report.problems),
        first_problems=[{"path": p.path[:MAX_DETAIL], "kind": p.kind,
                         "detail": p.detail[:MAX_DETAIL]}
                        for p in report.problems[:MAX_LISTED_PROBLEMS]],
        files=report.files,
        bytes_read=0 if report.mode == "fast" else report.bytes,
        signature=None if signature is None else {
            "present": signature.present, "fingerprint": signature.fingerprint,
            "checked": signature.checked, "valid": signature.valid},
        note=limited,
    )


def failure_record(bundle: str, problem: str, kind: str, origin: Origin, *,
                   now: dt.datetime | None = None) -> FixityRecord:
    """The record of a check that found the bundle unreadable as a bundle (damage without a
    report)."""
    return FixityRecord(bundle=bundle, time=now or dt.datetime.now(dt.UTC), result="damaged",
                        origin=origin, mode="blake3", problems=1,
                        first_problems=[{"path": bundle, "kind": kind,
                                         "detail": problem[:MAX_DETAIL]}],
                        note=problem[:MAX_DETAIL])


def record_key(record: FixityRecord, token: str) -> str:
    stamp = basic(record.time, fraction="microseconds")
    return f"{FIXITY_DIR}/{record.bundle}/{stamp}-{record.result}-{token}.json"


def write_record(storage: Storage, record: FixityRecord) -> str:
    """Create the record as a new object (never replacing one); returns its key.

    Raises StorageError when it cannot be written.
    """
    content = (json.dumps(record.to_json(), indent=2) + "\n").encode()
    for _ in range(3):
        key = record_key(record, secrets.token_hex(4))
        try:
            storage.put_if_absent(key, content)
        except ConditionFailed:
            continue  # the same microsecond and random part: choose another name
        return key
    raise ConditionFailed(f"{storage.display(FIXITY_DIR)}: could not find a free record name")


def parse_mark(key: str) -> Mark | None:
    """The mark of a record's key, or None for anything that is not a record's name."""
    if not key.startswith(FIXITY_DIR + "/"):
        return None
    bundle, _, leaf = key.removeprefix(FIXITY_DIR + "/").rpartition("/")
    match = _NAME.fullmatch(leaf)
    if not bundle or "/" in bundle or match is None:
        return None
    try:
        when = dt.datetime.strptime(match[1], _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    result: Result = "ok" if match[2] == "ok" else (
        "damaged" if match[2] == "damaged" else "limited")
    return Mark(bundle, when, result, key)


def latest_marks(storage: Storage, *, now: dt.datetime | None = None) -> dict[str, Mark]:
    """The newest record of each bundle that has any, from one listing of the records.

    A record dated more than a day after ``now`` is passed by: a clock that far off, or a
    record written to keep a bundle out of the audits' way, must not make it look checked.
    Raises StorageError.
    """
    latest_allowed = (now or dt.datetime.now(dt.UTC)) + FUTURE_SKEW
    newest: dict[str, Mark] = {}
    for info in storage.list(FIXITY_DIR + "/"):
        mark = parse_mark(info.key)
        if mark is None or mark.time > latest_allowed:
            continue
        known = newest.get(mark.bundle)
        if known is None or (mark.time, mark.key) > (known.time, known.key):
            newest[mark.bundle] = mark
    return newest

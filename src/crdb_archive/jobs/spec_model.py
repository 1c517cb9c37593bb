"""What a validated archive job spec holds: the job, its source, destination, retention."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive.backup.keys import NO_KEYS, EncryptionKeys
from crdb_archive.bundle.writer import BundleFormat
from crdb_archive.jobs.spec_trust import AUDIT_KEYS, AuditSpec
from crdb_archive.sources import KindChoice
from crdb_archive.storage.uri import parse_location
from crdb_archive.times import utc_iso

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey

IncrementalPolicy = Literal["none", "growing", "closed"]

DEFAULT_BINARY_REMOVAL_DAYS = 180

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")

# Every section and the keys it may hold; anything else is a mistake worth naming.
SECTIONS: dict[str, tuple[str, ...]] = {
    "job": ("name",),
    "source": ("uri", "endpoint_url", "kind", "backups", "incrementals", "with_incrementals",
               "encryption_passphrase_file", "kms", "schema", "as_of", "allow_gaps", "table"),
    "version": ("release", "force"),
    "binaries": ("platforms", "mirror", "cache_dir"),
    "destination": ("uri", "endpoint_url", "format", "storage_class", "object_lock",
                    "sign_key"),
    "destination.object_lock": ("mode", "days", "retain_until"),
    "retention": ("keep_last", "keep_days", "keep_monthly", "keep_yearly"),
    "warnings": ("binary_removal_days",),
    "audit": AUDIT_KEYS,
}
REQUIRED_SECTIONS = ("job", "source", "destination")



@dataclass(frozen=True)
class ObjectLock:
    """S3 Object Lock retention for every object of a bundle."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"]
    days: int | None
    retain_until: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "days": self.days,
            "retain_until": utc_iso(self.retain_until),
        }


@dataclass(frozen=True)
class Retention:
    """Which bundles of the job to keep; a rule left out does not keep anything."""

    keep_last: int | None = None
    keep_days: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {
            "keep_last": self.keep_last,
            "keep_days": self.keep_days,
            "keep_monthly": self.keep_monthly,
            "keep_yearly": self.keep_yearly,
        }


@dataclass(frozen=True)
class JobSpec:
    """A validated job. ``source`` and ``destination`` may carry credentials: show only the
    ``*_display`` forms."""

    path: Path
    name: str
    source: str
    source_display: str
    source_endpoint_url: str | None
    kind: KindChoice  # auto, backup, or export (changefeed or EXPORT output)
    backups: str  # "latest", "all", or a full backup's subdirectory
    # Which incremental backups go with a full one: none; the chain as it stands, a new bundle
    # each time it grows ("growing"); or the chain once it is closed by the next full backup,
    # one bundle for good ("closed": what a destination under Object Lock wants).
    incrementals: IncrementalPolicy
    release: str | None  # None: read it from each backup
    force_version: bool
    platforms: tuple[str, ...]
    mirror: str | None
    cache_dir: Path | None
    destination: str
    destination_display: str
    destination_endpoint_url: str | None
    format: BundleFormat
    storage_class: str | None
    object_lock: ObjectLock | None
    retention: Retention | None
    binary_removal_days: int
    use_cache: bool = True  # not a spec key: `run --no-cache` turns it off for one run
    # Opens encrypted backups: a passphrase (file or environment) or KMS URIs.
    keys: EncryptionKeys = field(default=NO_KEYS, repr=False)
    export: ExportSpec | None = None  # exports: the schema file and the snapshot wanted
    # Signs every bundle the job writes (destination.sign_key); loaded when the spec is read.
    sign_key: SigningKey | None = field(default=None, repr=False)
    audit: AuditSpec | None = None  # [audit]: audit the destination after retention

    @property
    def with_incrementals(self) -> bool:
        return self.incrementals != "none"

    @property
    def destination_scheme(self) -> str:
        return parse_location(self.destination).scheme

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "spec": str(self.path),
            "source": self.source_display,
            "source_endpoint_url": self.source_endpoint_url,
            "kind": self.kind,
            "backups": self.backups,
            "incrementals": self.incrementals,
            "release": self.release or "auto",
            "platforms": list(self.platforms),
            "destination": self.destination_display,
            "destination_endpoint_url": self.destination_endpoint_url,
            "format": self.format,
            "storage_class": self.storage_class,
            "object_lock": self.object_lock.to_json() if self.object_lock else None,
            "retention": self.retention.to_json() if self.retention else None,
            "encryption": {
                "passphrase": self.keys.passphrase_source,
                "kms": [uri.display for uri in self.keys.kms],
            },
            "export": self.export.to_json() if self.export else None,
            "sign_key": self.sign_key.fingerprint if self.sign_key else None,
            "audit": self.audit.to_json() if self.audit else None,
        }


@dataclass(frozen=True)
class ExportSpec:
    """What archiving changefeed or EXPORT output needs: ``source.schema`` and the rest."""

    schema: Path
    as_of: str  # latest, or one RESOLVED timestamp
    allow_gaps: bool
    table: str | None

    def to_json(self) -> dict[str, Any]:
        return {"schema": str(self.schema), "as_of": self.as_of, "allow_gaps": self.allow_gaps,
                "table": self.table}

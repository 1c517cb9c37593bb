"""The catalog of a destination: every bundle with what its tag files and the store say.

Built from one listing of the destination's top level, one listing (and a few small reads of
tag files) per directory bundle, and one listing of the fixity records; never from a payload
read. A tar keeps its tag files at its end: where it is a file here they are reached by
seeking, in an object store they would need the whole tar read (and, in an archive storage
class, restored first), so there the job record a run writes of each tar it archives is used
(``.crdb-archive-index/``), and without one the catalog says what it cannot know.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.publish import bundle_key
from crdb_archive.bundle.reader import BundleReader, DirReader, open_bundle_in
from crdb_archive.bundle.retrieve import TrustedTags, parse_description, trusted_tag_files
from crdb_archive.bundle.signature_check import signing_key_label
from crdb_archive.errors import (
    BadInput,
    CrdbArchiveError,
    NotRestorable,
    ObjectNotFound,
    StorageError,
)
from crdb_archive.jobs.destination import Destination, StoredBundle, described
from crdb_archive.jobs.fixity import Mark, latest_marks
from crdb_archive.storage.base import ObjectInfo
from crdb_archive.times import utc_iso
from crdb_archive.versions import VersionSpec, release_index, restore_plan


@dataclass(frozen=True)
class CatalogEntry:
    """One complete bundle of a destination.

    ``problem`` says why what its tag files tell could not be read (damage, or a tar in object
    storage without a job record); the fields it would have filled are None then. ``readable``
    is False when the payload waits in an archive storage class.
    """

    name: str
    key: str  # below the destination: name, or name.tar
    form: Literal["dir", "tar"]
    location: str
    size: int
    storage_class: str | None
    readable: bool
    lock_until: dt.datetime | None
    kind: Literal["backup", "export"] | None = None
    version: str | None = None
    time: dt.datetime | None = None
    created: dt.datetime | None = None
    source: str | None = None
    signature: str | None = None  # fingerprint of the signing key, as the bundle names it
    signed: bool | None = None  # whether tagmanifest-sha256.txt.sig is there (None: unknown)
    last: Mark | None = None
    problem: str | None = None
    payload_bytes: int | None = None  # Payload-Oxum, from trusted tag files

    @property
    def major(self) -> str | None:
        if self.version is None:
            return None
        try:
            return release_index().parse(self.version).major.name
        except CrdbArchiveError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "location": self.location,
            "kind": self.kind,
            "version": self.version,
            "major_version": self.major,
            "backup_time": utc_iso(self.time),
            "created": utc_iso(self.created),
            "source": self.source,
            "bytes": self.size,
            "form": self.form,
            "storage_class": self.storage_class,
            "readable": self.readable,
            "lock_until": utc_iso(self.lock_until),
            "signed": self.signed,
            "signature": self.signature,
            "last_verified": utc_iso(self.last.time) if self.last else None,
            "last_result": self.last.result if self.last else None,
            "last_record": self.last.key if self.last else None,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Catalog:
    entries: list[CatalogEntry]
    # Bundles with fixity records but no longer in the destination (deleted by retention).
    stale: list[str]
    # Directory prefixes without a tag manifest: an upload cut short, or one in progress.
    incomplete: list[str]

    def to_json(self, destination: str,
                routes: Mapping[str, RestoreRoute | None] | None = None,
                target: VersionSpec | None = None) -> dict[str, Any]:
        """The ``list --json`` contract: every entry, with its route into ``target`` (keyed by
        entry key in ``routes``) when one is asked for."""
        bundles = []
        for entry in self.entries:
            item = entry.to_json()
            if routes is not None:
                route = routes[entry.key]
                item["restore"] = route.to_json() if route is not None else None
            bundles.append(item)
        payload: dict[str, Any] = {"destination": destination, "bundles": bundles,
                                   "incomplete": self.incomplete, "stale_records": self.stale}
        if target is not None:
            payload["restorable_into"] = target.release_name or target.major.name
        return payload


def build_catalog(destination: Destination) -> Catalog:
    """Every complete bundle of ``destination``; raises StorageError when it cannot be listed,
    BadInput when it is a bundle itself.

    A bundle whose tag files are damaged is an entry with a ``problem``, not an error.
    """
    storage = destination.storage
    if storage.exists(layout.BAGIT_TXT):
        raise BadInput(f"{destination.display} is a bundle, not a destination: give the "
                       "directory (or prefix) that holds bundles")
    scan = destination.scan()
    marks = latest_marks(storage)
    made = [_vanishing(functools.partial(_dir_entry, destination, name))
            for name in sorted(scan.dirs) if name not in scan.deleting]
    made += [_vanishing(functools.partial(_tar_entry, destination, name, info,
                                          name in scan.records))
             for name, info in sorted(scan.tars.items())]
    entries = [entry for entry in made if entry is not None]
    entries = [_with_mark(entry, marks.get(entry.key)) for entry in entries]
    entries.sort(key=lambda e: (e.time is None, e.time or dt.datetime.min.replace(tzinfo=dt.UTC),
                                e.key))
    known = {entry.key for entry in entries}
    return Catalog(entries, sorted(set(marks) - known),
                   sorted(n for n in scan.unfinished if n not in scan.deleting))


def _vanishing(make: Callable[[], CatalogEntry]) -> CatalogEntry | None:
    """The entry, or None for a bundle deleted while the catalog was being made."""
    try:
        return make()
    except ObjectNotFound:
        return None


def _with_mark(entry: CatalogEntry, mark: Mark | None) -> CatalogEntry:
    return entry if mark is None else _replace(entry, last=mark)


def _replace(entry: CatalogEntry, **changes: Any) -> CatalogEntry:
    return dataclasses.replace(entry, **changes)


def _payload_class(first: ObjectInfo | None) -> tuple[str | None, bool]:
    """The payload's storage class and whether it is readable now, from its first object (a
    writer stores the whole payload one way)."""
    if first is None:
        return None, True
    return first.storage_class, first.readable


def _dir_entry(destination: Destination, name: str) -> CatalogEntry:
    # The bundle's top level and one object of its payload, never a listing of the whole
    # payload: a bundle may hold 100,000 files. Its size is its tag files' and Payload-Oxum's.
    storage = destination.storage
    tree = storage.child(name)
    top = [entry for entry in tree.list_level() if isinstance(entry, ObjectInfo)]
    payload = tree.list(layout.PAYLOAD_DIR + "/")
    storage_class, readable = _payload_class(next(payload, None))
    close = getattr(payload, "close", None)
    if close is not None:
        close()  # the rest of the listing is not needed
    head = storage.stat(f"{name}/{layout.TAGMANIFEST_SHA256}")
    base = CatalogEntry(
        name=name, key=name, form="dir", location=storage.display(name),
        size=sum(o.size for o in top), storage_class=storage_class, readable=readable,
        lock_until=head.retain_until if head is not None else None,
        signed=any(o.key == layout.SIGNATURE for o in top))
    entry = _described(base, DirReader(tree, top))
    if entry.problem is None and entry.payload_bytes is not None:
        return _replace(entry, size=base.size + entry.payload_bytes)
    # Payload-Oxum cannot be trusted: the size the store reports, from a full listing.
    return _replace(entry, size=sum(o.size for o in tree.list()))


def _tar_entry(destination: Destination, name: str, info: ObjectInfo,
               recorded: bool) -> CatalogEntry:
    storage = destination.storage
    key = bundle_key(name, "tar")
    stat = storage.stat(key) or info  # a listing does not carry the lock
    base = CatalogEntry(
        name=name, key=key, form="tar", location=storage.display(key), size=info.size,
        storage_class=info.storage_class, readable=info.readable,
        lock_until=stat.retain_until)
    if storage.local_paths() is not None:
        try:
            reader = open_bundle_in(storage, key)
        except StorageError:
            raise
        except CrdbArchiveError as error:
            return _replace(base, problem=str(error))
        return _described(base, reader)
    if not recorded:
        return _replace(base, problem=(
            "a tar in object storage keeps its tag files at its end, which listing it does "
            "not read, and it has no job record (.crdb-archive-index/); `crdb-archive audit` "
            "reads it whole and records what it holds"))
    return _from_record(base, destination.read_record(name))


def _from_record(base: CatalogEntry, record: StoredBundle) -> CatalogEntry:
    return _replace(base, kind=record.kind, version=record.version, time=record.time,
                    created=record.created, source=record.source,
                    signature=record.signing_key, problem=record.problem)


def _described(base: CatalogEntry, reader: BundleReader) -> CatalogEntry:
    """The entry with what the bundle's trusted tag files say, or a problem."""
    try:
        tags = trusted_tag_files(reader, (layout.DESCRIPTION, layout.BAG_INFO), signature=True)
        description = parse_description(reader, tags.files[layout.DESCRIPTION])
        oxum = tagfiles.parse_bag_info(tags.files[layout.BAG_INFO]).get("Payload-Oxum", [])
        payload_bytes = tagfiles.parse_oxum(oxum[0])[0] if len(oxum) == 1 else None
    except StorageError:
        raise
    except (CrdbArchiveError, tagfiles.TagFileError) as error:
        return _replace(base, problem=str(error))
    stored = described(base.name, base.location, base.form, description)
    return _replace(base, kind=stored.kind, version=stored.version, time=stored.time,
                    created=stored.created, source=stored.source,
                    signature=_fingerprint(tags), signed=tags.signature is not None
                    or tags.signature_oversized, payload_bytes=payload_bytes)


def _fingerprint(tags: TrustedTags) -> str | None:
    """The signing key's fingerprint: the signature's own, else what bag-info.txt names."""
    if tags.signature is not None:
        from crdb_archive.bundle.signature import (  # noqa: PLC0415 - only for signed ones
            SignatureProblem,
            parse_signature,
        )

        try:
            return parse_signature(tags.signature).fingerprint
        except SignatureProblem:
            pass
    return signing_key_label(tags.files.get(layout.BAG_INFO))


@dataclass(frozen=True)
class RestoreRoute:
    """How a bundle's data gets into a cluster on a target version."""

    direct: bool
    path: list[str] | None  # the majors from the backup's to the target's; None: no way
    needs_cockroachdb: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"direct": self.direct, "path": self.path,
                "needs_cockroachdb": self.needs_cockroachdb}


def restore_route(entry: CatalogEntry, target: VersionSpec) -> RestoreRoute | None:
    """Whether ``entry`` restores into ``target`` directly, through which chain of majors, or
    not at all (a downgrade); None when the bundle's version is unknown.

    An export bundle needs no CockroachDB (it loads into PostgreSQL or any Parquet reader):
    direct, without a path.
    """
    if entry.kind == "export":
        return RestoreRoute(True, None, needs_cockroachdb=False)
    if entry.version is None:
        return None
    index = release_index()
    try:
        backup = index.parse(entry.version)
        plan = restore_plan(entry.version, target.release_name or target.major.name)
    except NotRestorable:
        return RestoreRoute(False, None)
    except CrdbArchiveError:
        return None
    return RestoreRoute(index.can_restore(backup.major, target.major),
                        [m.name for m in plan.majors])

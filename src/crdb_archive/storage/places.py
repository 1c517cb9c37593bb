"""Where a command may write, decided before it writes anything.

A destination inside its own source (or equal to it) puts each bundle into the backup it
archives, and the next archive bundles that bundle too; a local destination that exists as a
file can never receive a bundle. Both are the user's mistake (exit 2), found here from the
locations alone, before a directory is created or an object uploaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from crdb_archive.errors import BadInput
from crdb_archive.storage.base import SCHEMES, WriteOptions, unsupported
from crdb_archive.storage.uri import Location, parse_location

AZURE_SCHEMES = ("azure", "azure-blob", "azure-storage")
# S3's storage classes that keep data durable (REDUCED_REDUNDANCY is deprecated; OUTPOSTS,
# SNOW and EXPRESS_ONEZONE are not for archives).
S3_STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)

# How a destination lies relative to a source.
Overlap = Literal["same", "dest-inside-source", "source-inside-dest"]


@dataclass(frozen=True)
class _Place:
    """A location reduced to what identifies it: a namespace and the segments of its path."""

    namespace: tuple[str, ...]  # ("file",) or (scheme, endpoint, bucket)
    segments: tuple[str, ...]


def overlap(source: str, dest: str, *, source_endpoint_url: str | None = None,
            dest_endpoint_url: str | None = None) -> Overlap | None:
    """How ``dest`` overlaps ``source``, or None when they are apart.

    Local paths are compared as real paths (symbolic links resolved, relative paths from the
    working directory); object storage by scheme, endpoint, bucket and the segments of the
    prefix (two clouds never overlap). A location too malformed to place is reported where it
    is opened, not here: None.
    """
    try:
        a = _place(parse_location(source), source_endpoint_url)
        b = _place(parse_location(dest), dest_endpoint_url)
    except (BadInput, ValueError):
        return None
    if a.namespace != b.namespace:
        return None
    if a.segments == b.segments:
        return "same"
    if b.segments[:len(a.segments)] == a.segments:
        return "dest-inside-source"
    if a.segments[:len(b.segments)] == b.segments:
        return "source-inside-dest"
    return None


def overlap_problem(source: str, dest: str, *, source_endpoint_url: str | None = None,
                    dest_endpoint_url: str | None = None,
                    refuse_source_inside: bool = False) -> str | None:
    """Why bundles may not go to ``dest`` given ``source`` (no secrets), or None.

    A destination equal to the source or inside it is always refused; a source inside the
    destination only with ``refuse_source_inside`` (a job, whose retention lists and deletes
    in its destination).
    """
    found = overlap(source, dest, source_endpoint_url=source_endpoint_url,
                    dest_endpoint_url=dest_endpoint_url)
    if found is None:
        return None
    shown_source, shown_dest = parse_location(source).redacted, parse_location(dest).redacted
    if found == "same":
        return (f"the destination {shown_dest} is the source itself: each bundle would land in "
                "the backup it archives; keep bundles apart from the backups")
    if found == "dest-inside-source":
        return (f"the destination {shown_dest} is inside the source {shown_source}: each "
                "bundle would land in the backup it archives, and the next archive would "
                "bundle it again; keep bundles apart from the backups")
    if found == "source-inside-dest" and refuse_source_inside:
        return (f"the source {shown_source} is inside the destination {shown_dest}: the job "
                "would list the backups among its bundles; keep bundles apart from the backups")
    return None


def check_destination_location(location: Location, options: WriteOptions | None = None) -> None:
    """Raise BadInput when bundles can never be written to ``location`` with ``options``, as
    far as the location alone tells (a local path that is a file; storage options for a local
    directory; a storage class the location's cloud lacks). What needs the store itself (a
    lock on a bucket without retention) is checked when it is opened."""
    if location.scheme != "file":
        if options is not None:
            check_options(location, options)
        return
    if options is not None:
        raise BadInput("a local --dest has no storage class or Object Lock; those are for "
                       "object storage destinations (s3://, gs://, azure-blob://)")
    require_directory(location.local_path)


def is_remote(location: Location) -> bool:
    """Whether ``location`` is in object storage rather than a local path."""
    return location.scheme != "file"


def storage_classes(location: Location) -> tuple[str, ...]:
    """The storage classes bundles may be written with at ``location`` (S3's durable storage
    classes, Cloud Storage's classes, Azure's access tiers); none for a local directory."""
    # Imported here: a command imports the SDK of the one cloud it talks to.
    if location.scheme == "s3":
        return S3_STORAGE_CLASSES
    if location.scheme == "gs":
        from crdb_archive.storage.gcs_retention import STORAGE_CLASSES  # noqa: PLC0415

        return STORAGE_CLASSES
    if location.scheme in AZURE_SCHEMES:
        from crdb_archive.storage.azure_options import TIERS  # noqa: PLC0415

        return TIERS
    return ()


def check_options(location: Location, options: WriteOptions) -> None:
    """Raise BadInput when the cloud of ``location`` can never honour ``options`` (an unknown
    storage class, a lock mode without a date), naming the bucket; no request is made."""
    if location.scheme == "s3":
        from crdb_archive.storage.s3_upload import validate_options  # noqa: PLC0415

        validate_options(options, f"bucket {location.host}")
    elif location.scheme == "gs":
        from crdb_archive.storage.gcs_retention import check_static  # noqa: PLC0415

        check_static(options, location.host)
    elif location.scheme in AZURE_SCHEMES:
        from crdb_archive.storage.azure_options import validate_options as check  # noqa: PLC0415

        check(options, f"container {location.host}")


def location_problem(location: Location) -> str | None:
    """Why ``location`` can never be opened as a storage, from its text alone, or None."""
    if location.scheme == "file":
        return "a local path takes no ?parameters" if location.params else None
    if location.scheme not in SCHEMES:
        return unsupported(location)
    if not location.host:
        what = "container" if location.scheme in AZURE_SCHEMES else "bucket"
        return f"{location.redacted} names no {what} ({location.scheme}://{what}/prefix)"
    return None


def endpoints_for(endpoint_url: str | None, source: str, dest: str
                  ) -> tuple[str | None, str | None]:
    """The endpoint of the source and of the destination when ``--endpoint-url`` is given
    for a command that reads one location and writes another.

    The option names the endpoint of the one remote location (or of both, when both are in
    the same kind of store). Raises BadInput when the two are in different clouds: each then
    gives its own endpoint in its URI.
    """
    if endpoint_url is None:
        return None, None
    try:
        kinds = {name: _cloud(parse_location(text)) for name, text in (("source", source),
                                                                        ("dest", dest))}
    except ValueError:
        return endpoint_url, endpoint_url  # malformed: reported where it is opened
    if len({kind for kind in kinds.values() if kind is not None}) > 1:
        raise BadInput("--endpoint-url names the endpoint of one remote location, and the "
                       "source and --dest are in different clouds: give each its own endpoint "
                       "in its URI (AWS_ENDPOINT= for s3://, ENDPOINT= for gs:// and "
                       "azure-blob://)")
    return (endpoint_url if kinds["source"] else None,
            endpoint_url if kinds["dest"] else None)


def _cloud(location: Location) -> str | None:
    if location.scheme == "file":
        return None
    return "azure" if location.scheme in AZURE_SCHEMES else location.scheme


def require_directory(path: Path) -> None:
    """Raise BadInput when ``path``, or the nearest part of it that exists, is not a directory.

    What does not exist yet is fine: it is created when the first bundle is written.
    """
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return
        if os.path.lexists(candidate):
            if candidate == path:
                raise BadInput(f"the destination {path} is not a directory")
            raise BadInput(f"the destination {path} cannot be created: {candidate} is not a "
                           "directory")


def _place(location: Location, endpoint_url: str | None) -> _Place:
    if location.scheme == "file":
        real = os.path.realpath(location.path)
        return _Place(("file",), tuple(part for part in real.split("/") if part))
    endpoint = ""
    scheme = location.scheme
    # Imported here: a local archive never needs a cloud's SDK.
    if scheme == "s3":
        from crdb_archive.storage.s3_config import s3_target  # noqa: PLC0415

        endpoint = _endpoint(s3_target(location, endpoint_url=endpoint_url).endpoint_url)
    elif scheme == "gs":
        from crdb_archive.storage.gcs_config import gcs_target  # noqa: PLC0415

        endpoint = _endpoint(gcs_target(location, endpoint_url=endpoint_url).endpoint)
    elif scheme in AZURE_SCHEMES:
        from crdb_archive.storage.azure_config import (  # noqa: PLC0415
            azure_target,
            endpoint_origin,
        )

        # The three schemes name one service; the endpoint names the account.
        scheme = "azure"
        endpoint = endpoint_origin(azure_target(location, endpoint_url=endpoint_url))
    segments = tuple(part for part in location.path.split("/") if part)
    return _Place((scheme, endpoint, location.host), segments)


def _endpoint(url: str | None) -> str:
    """An endpoint in one spelling (scheme, host, port); "" for AWS's own."""
    if url is None:
        return ""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"

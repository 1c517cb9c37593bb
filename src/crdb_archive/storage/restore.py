"""Ask the store to make a bundle's archived objects readable again (S3's GLACIER and
DEEP_ARCHIVE, Azure's Archive tier), and say what is pending. A store without the ColdStorage
capability (Cloud Storage, whose every class is read as it is) has nothing to restore, and the
report says so."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crdb_archive.errors import NotABundle, ObjectNotFound, StorageError
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.storage.base import (
    DEFAULT_PARALLELISM,
    ObjectInfo,
    RestoreRequestState,
    Storage,
    open_location,
)
from crdb_archive.storage.capabilities import ColdStorage
from crdb_archive.storage.s3 import check_restore_request
from crdb_archive.storage.uri import parse_location

# The bag declaration: every bundle directory has it (BagIt 1.0, RFC 8493 section 2.1.1).
_BAG_DECLARATION = "bagit.txt"


@dataclass(frozen=True)
class RestoreReport:
    """What happened to each object of a bundle; ``pending`` keys are not readable yet."""

    bundle: str
    days: int
    tier: str
    requested: tuple[str, ...]
    in_progress: tuple[str, ...]
    available: int
    not_needed: int
    # Whether the store keeps objects that must be restored before reading at all.
    cold_storage: bool = True

    @property
    def pending(self) -> tuple[str, ...]:
        return self.requested + self.in_progress

    @property
    def complete(self) -> bool:
        """Every object can be read now."""
        return not self.pending

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "days": self.days,
            "tier": self.tier,
            "requested": len(self.requested),
            "in_progress": len(self.in_progress),
            "available": self.available,
            "not_needed": self.not_needed,
            "cold_storage": self.cold_storage,
            "complete": self.complete,
            "pending": list(self.pending),
        }


def request_bundle_restore(
    uri: str,
    days: int,
    tier: str = "Standard",
    endpoint_url: str | None = None,
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    progress: ProgressCallback = no_progress,
) -> RestoreReport:
    """Request a ``days``-long restore of every archived object of the bundle at ``uri``.

    ``uri`` names a bundle directory (prefix) or a bundle's ``.tar`` object. Objects already
    restored or being restored are counted, not requested again.
    Raises BadInput (bad days or tier), NotABundle, StorageError.
    """
    check_restore_request(days, tier)
    location = parse_location(uri)
    if location.path.rstrip("/").endswith(".tar"):
        parent, name = location.parent()
        storage = open_location(parent, endpoint_url=endpoint_url, parallelism=parallelism)
        with storage:
            info = storage.stat(name)
            if info is None:
                raise NotABundle(f"{location} does not exist")
            return _restore(storage, str(location), [info], days, tier, parallelism, progress)
    storage = open_location(location, endpoint_url=endpoint_url, parallelism=parallelism)
    with storage:
        objects = list(storage.list())
        if not any(info.key == _BAG_DECLARATION for info in objects):
            raise NotABundle(f"{location} holds no bundle (no {_BAG_DECLARATION})")
        return _restore(storage, str(location), objects, days, tier, parallelism, progress)


def _request(cold: ColdStorage, key: str, *, days: int, tier: str
             ) -> tuple[str, RestoreRequestState]:
    try:
        return key, cold.request_restore(key, days=days, tier=tier)
    except ObjectNotFound:
        # Deleted since the listing: nothing left to restore.
        return key, "not-needed"


def _restore(
    storage: Storage,
    bundle: str,
    objects: list[ObjectInfo],
    days: int,
    tier: str,
    parallelism: int,
    progress: ProgressCallback,
) -> RestoreReport:
    task = f"restore requests for {bundle}"
    needed = [info.key for info in objects if info.restore == "needed"]
    states: dict[str, RestoreRequestState] = {
        info.key: "not-needed" if info.restore == "not-needed" else (
            "in-progress" if info.restore == "in-progress" else "available")
        for info in objects if info.restore != "needed"
    }
    progress(ProgressEvent(task, 0, len(needed)))

    cold = storage.cold_storage()
    if needed and cold is None:  # only a store with archive storage classes says "needed"
        raise StorageError(f"{bundle} reports objects to restore, yet has no restores")
    if cold is not None:
        request = functools.partial(_request, cold, days=days, tier=tier)
        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            for done, (key, state) in enumerate(pool.map(request, needed), 1):
                states[key] = state
                progress(ProgressEvent(task, done, len(needed)))
    progress(ProgressEvent(task, len(needed), len(needed), finished=True))
    ordered = sorted(states)
    return RestoreReport(
        bundle=bundle, days=days, tier=tier,
        requested=tuple(k for k in ordered if states[k] == "requested"),
        in_progress=tuple(k for k in ordered if states[k] == "in-progress"),
        available=sum(1 for state in states.values() if state == "available"),
        not_needed=sum(1 for state in states.values() if state == "not-needed"),
        cold_storage=cold is not None,
    )

"""Conditional writes of small Cloud Storage objects, on the object's generation.

``ifGenerationMatch=0`` creates an object only where there is none; ``ifGenerationMatch=<g>``
replaces or deletes it only while generation ``g`` is the live one. The store answers 412 when
the condition does not hold: another writer got there first. The version token of an object is
its generation, which changes with every write.

A request whose answer was lost is tried again, and the retry may meet the condition our own
first attempt broke: an object that holds exactly our bytes then is our write.
"""

from __future__ import annotations

import hashlib
import time

from google.api_core import exceptions as api_exceptions

from crdb_archive.errors import ConditionFailed, CrdbArchiveError
from crdb_archive.storage.gcs_errors import (
    CONNECTION_ATTEMPTS,
    TRANSPORT_ERRORS,
    backoff,
    cannot_connect,
    is_transient,
    translate,
    with_retries,
)
from crdb_archive.storage.gcs_retention import Placement
from crdb_archive.storage.gcs_upload import TIMEOUT, ObjectTarget, Stored, put_whole
from crdb_archive.storage.receipts import Crc32c, b64


def _generation(version: str, target: ObjectTarget, action: str) -> int:
    if not version.isdigit() or int(version) == 0:
        raise ConditionFailed(f"cannot {action} {target.where}: {version!r} is not a "
                              "generation of it (another writer changed it, or it is gone)")
    return int(version)


def put(target: ObjectTarget, data: bytes, version: str | None) -> str:
    """Write ``data`` if the live generation is ``version`` (None: if there is no object);
    returns the new generation. Raises ConditionFailed, StorageError."""
    match = 0 if version is None else _generation(version, target, "write")
    attempt = 1
    while True:
        try:
            stored = put_whole(target, data, Placement(), if_generation_match=match)
            return str(stored.generation)
        except CrdbArchiveError:
            raise
        except api_exceptions.PreconditionFailed:
            if attempt > 1:
                ours = _holds(target, data)
                if ours is not None:
                    return ours
            raise ConditionFailed(f"cannot write {target.where}: another writer changed it "
                                  "first (412)") from None
        except TRANSPORT_ERRORS as error:
            _retry_or_raise(error, target, "write", attempt)
        attempt += 1
        time.sleep(backoff(attempt))


def delete(target: ObjectTarget, version: str) -> None:
    """Delete the object if the live generation is ``version``. Raises ConditionFailed,
    StorageError."""
    match = _generation(version, target, "delete")
    # GCS refuses the delete itself (412) when the generation moved on; looking first also
    # keeps a store that ignores preconditions on deletes (fake-gcs-server does) from
    # deleting another writer's object in all but a race.
    live = with_retries(lambda: target.bucket.get_blob(target.name, retry=None,
                                                       timeout=TIMEOUT),
                        "read", target.where, target.secrets, attempts=target.attempts,
                        endpoint=target.endpoint)
    if live is None:
        raise ConditionFailed(f"cannot delete {target.where}: it is gone")
    if live.generation != match:
        raise ConditionFailed(f"cannot delete {target.where}: another writer changed it first")
    attempt = 1
    while True:
        try:
            target.bucket.blob(target.name).delete(if_generation_match=match, retry=None,
                                                   timeout=TIMEOUT)
        except CrdbArchiveError:
            raise
        except api_exceptions.PreconditionFailed:
            raise ConditionFailed(f"cannot delete {target.where}: another writer changed it "
                                  "first (412)") from None
        except api_exceptions.NotFound:
            if attempt > 1:
                return  # our own earlier attempt, whose answer was lost, deleted it
            raise ConditionFailed(f"cannot delete {target.where}: it is gone") from None
        except TRANSPORT_ERRORS as error:
            _retry_or_raise(error, target, "delete", attempt)
        else:
            return
        attempt += 1
        time.sleep(backoff(attempt))


def _retry_or_raise(error: BaseException, target: ObjectTarget, action: str,
                    attempt: int) -> None:
    limit = min(CONNECTION_ATTEMPTS, target.attempts) if cannot_connect(error) else (
        target.attempts)
    if not is_transient(error) or attempt >= limit:
        raise translate(error, action, target.where, target.secrets, attempts=attempt,
                        endpoint=target.endpoint) from None


def _holds(target: ObjectTarget, data: bytes) -> str | None:
    """The live generation when the object holds exactly ``data``, else None."""
    try:
        found = target.bucket.get_blob(target.name, retry=None, timeout=TIMEOUT)
    except TRANSPORT_ERRORS:
        return None
    if found is None:
        return None
    stored = Stored.of_blob(found)
    same = (stored.size == len(data)
            and stored.crc32c == Crc32c(data).b64()
            and stored.md5 in (None, b64(hashlib.md5(data).digest())))  # noqa: S324
    return str(stored.generation) if same else None

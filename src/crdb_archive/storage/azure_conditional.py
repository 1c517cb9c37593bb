"""Conditional writes of small blobs: ``If-None-Match: *`` and ``If-Match: <ETag>``.

The service answers 409 (BlobAlreadyExists) when a blob exists where none may be, 412
(ConditionNotMet) when the ETag no longer holds, and 404 when ``If-Match`` names a blob that is
gone: each means another writer got there first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError

from crdb_archive.storage.azure_errors import Translator, error_code
from crdb_archive.storage.azure_read import BlobRead, read_small
from crdb_archive.storage.base import Versioned
from crdb_archive.storage.conditional import Answers, lost_races, versioned

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

_ANSWERS = Answers(
    HttpResponseError, error_code,
    lost_race=frozenset({"BlobAlreadyExists", "ConditionNotMet", "412"}),
    gone=frozenset({"BlobNotFound", "404"}))


@dataclass(frozen=True)
class Target:
    """One blob and how to name it in messages."""

    blob: BlobClient
    where: str
    errors: Translator


@contextmanager
def _conditional(target: Target, action: str, *, gone_fails: bool) -> Iterator[None]:
    with (target.errors.around(action, target.where),
          lost_races(_ANSWERS, action, target.where, gone_fails=gone_fails)):
        yield


def read_versioned(target: Target, limit: int, attempts: int) -> Versioned | None:
    """The blob's content and ETag, or None when there is none; raises BadInput when it is
    larger than ``limit``, StorageError."""
    found = read_small(BlobRead(target.blob, target.where, target.errors, attempts), limit)
    return versioned(found, limit, target.where)


def put_if_absent(target: Target, data: bytes) -> str:
    """Put Blob only where no blob is; returns the new ETag."""
    with _conditional(target, "write", gone_fails=False):
        answer = target.blob.upload_blob(data, length=len(data), overwrite=False,
                                         validate_content=True, max_concurrency=1)
    return str(answer["etag"])


def put_if_version(target: Target, data: bytes, version: str) -> str:
    """Put Blob over the blob whose ETag is ``version``; returns the new ETag."""
    with _conditional(target, "write", gone_fails=True):
        answer = target.blob.upload_blob(data, length=len(data), overwrite=True,
                                         validate_content=True, max_concurrency=1,
                                         etag=version,
                                         match_condition=MatchConditions.IfNotModified)
    return str(answer["etag"])


def delete(target: Target, version: str) -> None:
    """Delete Blob if its ETag is still ``version``; raises ConditionFailed."""
    with _conditional(target, "delete", gone_fails=True):
        target.blob.delete_blob(etag=version, match_condition=MatchConditions.IfNotModified)

"""Conditional writes of small S3 objects: ``If-None-Match: *`` and ``If-Match: <ETag>``.

S3 answers 412 (PreconditionFailed) when a condition does not hold, 409
(ConditionalRequestConflict) when another conditional write to the same key is in flight, and
404 when ``If-Match`` names an object that is gone: each means another writer got there first.
AWS S3 has honoured these headers since 2024, as do current MinIO and Ceph releases.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from crdb_archive.storage.base import Versioned
from crdb_archive.storage.conditional import Answers, lost_races, versioned
from crdb_archive.storage.s3_errors import error_code, s3_errors
from crdb_archive.storage.s3_read import ObjectRead, read_small

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ANSWERS = Answers(
    ClientError, error_code,
    lost_race=frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}),
    gone=frozenset({"NoSuchKey", "404", "NotFound"}))


@dataclass(frozen=True)
class Target:
    """One object and how to name it in messages."""

    client: S3Client
    bucket: str
    key: str  # the full key in the bucket
    where: str
    secrets: Sequence[str]


@contextmanager
def _conditional(target: Target, action: str, *, gone_fails: bool) -> Iterator[None]:
    with (s3_errors(action, target.where, target.secrets),
          lost_races(_ANSWERS, action, target.where, gone_fails=gone_fails)):
        yield


def read_versioned(target: Target, limit: int, attempts: int) -> Versioned | None:
    """The object's content and ETag, or None when there is none; raises BadInput when it is
    larger than ``limit``, StorageError."""
    found = read_small(ObjectRead(target.client, target.bucket, target.key, target.where,
                                  target.secrets, attempts), limit)
    return versioned(found, limit, target.where)


def put(target: Target, data: bytes, **conditions: Any) -> str:
    """PutObject under ``conditions`` (IfNoneMatch / IfMatch); returns the new ETag."""
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    with _conditional(target, "write", gone_fails="IfMatch" in conditions):
        answer = target.client.put_object(
            Bucket=target.bucket, Key=target.key, Body=data, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum, **conditions)
    return str(answer["ETag"])


def delete(target: Target, version: str) -> None:
    """DeleteObject if the ETag is still ``version``; raises ConditionFailed."""
    with _conditional(target, "delete", gone_fails=True):
        target.client.delete_object(Bucket=target.bucket, Key=target.key, IfMatch=version)

"""From an ``s3://`` URI with CockroachDB's parameters to a configured boto3 S3 client.

Users paste the URI they gave ``BACKUP INTO``, so the parameters are CockroachDB's own
(cloud-storage-authentication docs): ``AUTH=specified|implicit``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT``,
``AWS_USE_PATH_STYLE``. Parameters that only change how CockroachDB writes are accepted and
ignored here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
)
from botocore.hooks import BaseEventHooks

from crdb_archive import __version__
from crdb_archive.errors import BadInput
from crdb_archive.storage import cloud_config
from crdb_archive.storage.cloud_config import check_aws_auth, check_params, http_endpoint, root_of
from crdb_archive.storage.uri import Location, redact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_USED = {
    "AUTH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_ENDPOINT", "AWS_USE_PATH_STYLE",
}
# CockroachDB parameters about how it writes backups; they do not change how we read or write.
_IGNORED = {
    "S3_STORAGE_CLASS", "AWS_SERVER_ENC_MODE", "AWS_SERVER_KMS_ID", "AWS_SKIP_CHECKSUM",
    "COCKROACH_LOCALITY", "AWS_SKIP_TLS_VERIFY",
}
_UNSUPPORTED = {
    name: f"{name} is not supported; use the default credential chain (AWS_PROFILE with a "
          "role_arn) instead"
    for name in ("ASSUME_ROLE", "AWS_ROLE_ARN", "AWS_USE_VIRTUAL_HOSTED_STYLE")
}

# botocore's own check, which also admits legacy names with capitals and underscores.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Target:
    """Where and as whom to talk to S3; secrets are kept out of ``repr``."""

    bucket: str
    prefix: str
    region: str | None
    endpoint_url: str | None
    path_style: bool
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        values = (self.access_key_id, self.secret_access_key, self.session_token)
        return tuple(v for v in values if v)


def s3_target(location: Location, *, endpoint_url: str | None = None) -> S3Target:
    """Read bucket, prefix, credentials, region and endpoint from an ``s3://`` location.

    Raises BadInput for a malformed bucket or prefix, an unknown or contradictory parameter,
    or AUTH=specified without keys; the message names parameters, never their values.
    """
    where = str(location)
    bucket, prefix = root_of(
        location, name_pattern=_BUCKET, invalid="S3 bucket name",
        not_host_port="an s3:// URI takes a bucket name, not host:port; give a custom "
                      "endpoint with AWS_ENDPOINT or --endpoint-url")
    check_params(location, _USED | _IGNORED, _UNSUPPORTED)
    key_id = location.param("AWS_ACCESS_KEY_ID") or None
    secret = location.param("AWS_SECRET_ACCESS_KEY") or None
    token = location.param("AWS_SESSION_TOKEN") or None
    auth = (location.param("AUTH") or "").lower()
    check_aws_auth(where, auth, key_id, secret, token)
    if token and not key_id:
        raise BadInput(f"{where}: AWS_SESSION_TOKEN needs AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY")
    endpoint = (
        location.param("AWS_ENDPOINT") or endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    )
    if endpoint is not None:
        endpoint = http_endpoint(endpoint, where, f"the S3 endpoint {redact(endpoint)}")
    return S3Target(
        bucket=bucket, prefix=prefix, region=location.param("AWS_REGION") or None,
        endpoint_url=endpoint, path_style=_path_style(location, where, endpoint),
        access_key_id=key_id, secret_access_key=secret, session_token=token,
    )


def _path_style(location: Location, where: str, endpoint: str | None) -> bool:
    """AWS_USE_PATH_STYLE, by default true with a custom endpoint; raises BadInput."""
    given = (location.param("AWS_USE_PATH_STYLE") or "").lower()
    if given not in ("", "true", "false"):
        raise BadInput(f"{where}: AWS_USE_PATH_STYLE must be true or false")
    # S3-compatible stores (MinIO, Ceph, moto) rarely have wildcard DNS for virtual hosts.
    return given == "true" or (endpoint is not None and given == "")


def max_attempts() -> int:
    """Attempts per request: ``AWS_MAX_ATTEMPTS`` when set, else 10; raises BadInput if bad."""
    return cloud_config.max_attempts("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)


def make_client(target: S3Target, *, pool_size: int) -> S3Client:
    """A boto3 S3 client for ``target``; one client is safe to share between threads.

    Raises BadInput for a missing AWS profile or other configuration mistakes.
    """
    try:
        # A session of our own: the default one is global state and not thread-safe.
        session = boto3.session.Session(
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            aws_session_token=target.session_token,
            region_name=target.region,
        )
        config = Config(
            region_name=target.region or session.region_name or DEFAULT_REGION,
            # "standard" retries throttling (SlowDown) and 5xx with backoff and jitter.
            # total_max_attempts counts the first attempt, as AWS_MAX_ATTEMPTS does; botocore's
            # max_attempts would count retries only (one more attempt than asked).
            retries={"mode": "standard", "total_max_attempts": max_attempts()},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max(pool_size, 1),
            user_agent_extra=f"crdb-archive/{__version__}",
            s3={"addressing_style": "path" if target.path_style else "auto"},
        )
        client = session.client("s3", endpoint_url=target.endpoint_url, config=config)
    except BotoCoreError as error:
        raise BadInput(f"s3://{target.bucket}: cannot configure the S3 client: "
                       f"{type(error).__name__}") from None
    fail_fast_on_connection_errors(client.meta.events, max_attempts())
    return client


# An endpoint that refuses connections, or a name that does not resolve, will not come back
# within the minute botocore's backoff would wait: a few quick attempts tell a blip from a
# mistake, and the operator hears about it in seconds. Throttling and 5xx keep the full count.
CONNECTION_ATTEMPTS = 3
_CONNECTION_BACKOFF = 0.25


class GaveUpConnecting(ConnectionError):
    """botocore's connection error, after the attempts a connection failure gets."""

    fmt = "Could not connect to the endpoint URL: {endpoint_url} after {attempts} attempts"


def fail_fast_on_connection_errors(events: BaseEventHooks, attempts: int) -> None:
    """Give connection-level failures at most CONNECTION_ATTEMPTS attempts (fewer when
    ``attempts`` is smaller) with short pauses, then raise GaveUpConnecting.

    botocore asks every ``needs-retry`` handler in turn and sleeps for the first answer;
    registered first, this one answers for connection failures before the standard policy.
    """
    limit = max(1, min(CONNECTION_ATTEMPTS, attempts))

    def handler(attempts: int, caught_exception: Exception | None = None,
                request_dict: dict[str, Any] | None = None, **_: Any) -> float | None:
        if not isinstance(caught_exception, EndpointConnectionError | ConnectTimeoutError):
            return None
        if attempts >= limit:
            endpoint = (request_dict or {}).get("url", "")
            raise GaveUpConnecting(endpoint_url=endpoint, attempts=attempts,
                                   reason=caught_exception)
        return float(_CONNECTION_BACKOFF * attempts)

    # The stubs type handlers as returning None; botocore uses what they return.
    events.register_first("needs-retry.s3", cast(Callable[..., None], handler),
                          unique_id="crdb-archive-fail-fast")

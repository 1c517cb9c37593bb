"""From a ``gs://`` URI with CockroachDB's parameters to credentials and an HTTP session.

Users paste the URI they gave ``BACKUP INTO``, so the parameters are CockroachDB's own
(cloud-storage-authentication docs): ``AUTH=specified`` with ``CREDENTIALS`` (a service
account key, base64 of its JSON) or ``BEARER_TOKEN`` (an OAuth2 access token, never
refreshed), ``AUTH=implicit`` (application default credentials), ``GOOGLE_BILLING_PROJECT``
(requester pays). Ours on top: ``ENDPOINT=`` for another endpoint (an emulator, a private
endpoint); ``$STORAGE_EMULATOR_HOST`` is the SDK's own convention for an emulator.

Without any credential parameter, application default credentials are used, except at an
endpoint of our own choosing (``ENDPOINT=``, ``--endpoint-url``, ``$STORAGE_EMULATOR_HOST``),
where requests go unauthenticated, as emulators expect.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import google.auth
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import credentials as oauth2_credentials
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter

from crdb_archive import __version__
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage import cloud_config
from crdb_archive.storage.cloud_config import check_params, root_of, with_scheme
from crdb_archive.storage.uri import Location, redact

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
# Read and write objects, read bucket metadata (retention): what CockroachDB asks for too.
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
ATTEMPTS_ENV = "CRDB_ARCHIVE_GCS_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 10

_USED = {"AUTH", "CREDENTIALS", "BEARER_TOKEN", "GOOGLE_BILLING_PROJECT", "ENDPOINT"}
_UNSUPPORTED = {
    "ASSUME_ROLE": "service account impersonation (ASSUME_ROLE) is not supported; give the "
                   "target account's key as CREDENTIALS, or use AUTH=implicit with application "
                   "default credentials that impersonate it (gcloud auth application-default "
                   "login --impersonate-service-account=...)",
}
# Bucket names: 3-63 characters (up to 222 with dots), lower case, digits, '-', '_', '.'.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# The fields of a service account key that must never be shown.
_KEY_SECRETS = ("private_key", "private_key_id")


@dataclass(frozen=True)
class GcsTarget:
    """Where and as whom to talk to Cloud Storage; secrets are kept out of ``repr``."""

    bucket: str
    prefix: str
    endpoint: str  # scheme://host[:port], no trailing slash
    custom_endpoint: bool  # ours (ENDPOINT=, --endpoint-url, the emulator variable)
    auth: str  # "anonymous", "implicit", "key", "token"
    billing_project: str | None = None
    key_info: dict[str, Any] | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def with_prefix(self, prefix: str) -> GcsTarget:
        return GcsTarget(self.bucket, prefix, self.endpoint, self.custom_endpoint, self.auth,
                         self.billing_project, self.key_info, self.bearer_token, self.secrets)


def gcs_target(location: Location, *, endpoint_url: str | None = None) -> GcsTarget:
    """Read bucket, prefix, credentials and endpoint from a ``gs://`` location.

    Raises BadInput for a malformed bucket or prefix, an unknown, unsupported or contradictory
    parameter, or credentials that cannot be decoded; the message names parameters, never
    their values.
    """
    where = str(location)
    bucket, prefix = root_of(
        location, name_pattern=_BUCKET, invalid="Cloud Storage bucket name",
        not_host_port="a gs:// URI takes a bucket name, not host:port; give another endpoint "
                      "with ENDPOINT=... or --endpoint-url")
    check_params(location, _USED, _UNSUPPORTED)
    secrets = location.secret_values()
    # A '+' of base64 arrives as a space when the URI was not percent-encoded; base64 has none.
    key_text = (location.param("CREDENTIALS") or "").replace(" ", "+") or None
    token = location.param("BEARER_TOKEN") or None
    auth = (location.param("AUTH") or "").lower()
    _check_auth(where, auth, key_text, token)
    endpoint, custom = _endpoint(location, endpoint_url, where)
    key_info = _key_info(key_text, where) if key_text else None
    if key_text is not None and key_info is not None:
        secrets += (key_text, *(str(key_info[name]) for name in _KEY_SECRETS
                                if key_info.get(name)))
    return GcsTarget(
        bucket=bucket, prefix=prefix, endpoint=endpoint, custom_endpoint=custom,
        auth=_auth_kind(auth, key_info, token, custom=custom),
        billing_project=location.param("GOOGLE_BILLING_PROJECT") or None,
        key_info=key_info, bearer_token=token, secrets=secrets,
    )


def _check_auth(where: str, auth: str, key_text: str | None, token: str | None) -> None:
    """Raises BadInput unless AUTH and the credentials the URI carries agree."""
    if auth not in ("", "specified", "implicit"):
        raise BadInput(f"{where}: AUTH must be specified or implicit")
    if auth == "implicit" and (key_text or token):
        raise BadInput(f"{where}: AUTH=implicit uses application default credentials, yet the "
                       "URI also carries CREDENTIALS or BEARER_TOKEN; drop one or the other")
    if key_text and token:
        raise BadInput(f"{where}: give one of CREDENTIALS or BEARER_TOKEN, not both")
    if auth == "specified" and not (key_text or token):
        raise BadInput(f"{where}: AUTH=specified needs CREDENTIALS (a base64 service account "
                       "key) or BEARER_TOKEN")


def _auth_kind(auth: str, key_info: dict[str, Any] | None, token: str | None, *,
               custom: bool) -> str:
    """How requests are signed: with the key, the token, application default credentials,
    or not at all (a custom endpoint without credentials, such as an emulator)."""
    if key_info is not None:
        return "key"
    if token:
        return "token"
    if auth == "implicit" or not custom:
        return "implicit"
    return "anonymous"


def _endpoint(location: Location, endpoint_url: str | None, where: str) -> tuple[str, bool]:
    given = location.param("ENDPOINT") or endpoint_url
    if given:
        return _normalize(given, "https", where), True
    emulator = os.environ.get(EMULATOR_ENV)
    if emulator:
        # The SDK's convention names an emulator, which speaks plain HTTP unless told.
        return _normalize(emulator, "http", f"${EMULATOR_ENV}"), True
    return DEFAULT_ENDPOINT, False


def _normalize(value: str, default_scheme: str, where: str) -> str:
    text = with_scheme(value.strip(), default_scheme)
    scheme, _, rest = text.partition("://")
    host = rest.split("/", 1)[0]
    if scheme.lower() not in ("http", "https") or not host or "@" in host:
        raise BadInput(f"{where}: the Cloud Storage endpoint {redact(value)} is not an "
                       "http(s) URL")
    return f"{scheme.lower()}://{host}"


def _key_info(text: str, where: str) -> dict[str, Any]:
    """The service account key in CREDENTIALS; raises BadInput without echoing any of it."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{where}: CREDENTIALS is not base64 (give the service account key "
                       "JSON encoded as base64, as for BACKUP INTO)") from None
    try:
        info = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadInput(f"{where}: CREDENTIALS does not decode to JSON (give the service "
                       "account key JSON encoded as base64)") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise BadInput(f"{where}: CREDENTIALS is not a service account key (its JSON needs "
                       "\"type\": \"service_account\"); for other credentials use "
                       "AUTH=implicit")
    missing = [name for name in ("client_email", "private_key", "token_uri")
               if not isinstance(info.get(name), str) or not info.get(name)]
    if missing:
        raise BadInput(f"{where}: the service account key in CREDENTIALS lacks "
                       f"{', '.join(missing)}")
    return info


def make_credentials(target: GcsTarget) -> Credentials:
    """The credentials ``target`` asks for.

    Raises BadInput for a key that cannot be loaded, StorageError when application default
    credentials cannot be found.
    """
    where = f"gs://{target.bucket}"
    if target.auth == "key" and target.key_info is not None:
        try:
            key: Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                target.key_info, scopes=[SCOPE])
        except (ValueError, TypeError, KeyError):
            raise BadInput(f"{where}: the private key of the service account key in "
                           "CREDENTIALS cannot be loaded") from None
        return key
    if target.auth == "token" and target.bearer_token is not None:
        token: Credentials = oauth2_credentials.Credentials(token=target.bearer_token)  # type: ignore[no-untyped-call]
        return token
    if target.auth == "anonymous":
        anonymous: Credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return anonymous
    try:
        found, _ = google.auth.default(scopes=[SCOPE])
    except DefaultCredentialsError:
        raise StorageError(
            f"{where}: no application default credentials found; set "
            "GOOGLE_APPLICATION_CREDENTIALS, run gcloud auth application-default login, run "
            "on Google Cloud, or put AUTH=specified&CREDENTIALS=<base64 key> in the URI"
        ) from None
    implicit: Credentials = found
    return implicit


def make_session(credentials: Credentials, *, pool_size: int) -> AuthorizedSession:
    """An HTTP session that signs requests with ``credentials``; safe to share between
    threads. Its pool holds ``pool_size`` connections."""
    session = AuthorizedSession(credentials, refresh_timeout=30)  # type: ignore[no-untyped-call]
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = f"crdb-archive/{__version__}"
    return session


def max_attempts() -> int:
    """Attempts per request: ``$CRDB_ARCHIVE_GCS_MAX_ATTEMPTS`` when set, else 10; raises
    BadInput if it is not a positive integer."""
    return cloud_config.max_attempts(ATTEMPTS_ENV, DEFAULT_MAX_ATTEMPTS)

"""From an ``azure://`` URI with CockroachDB's parameters to where and as whom to talk to Azure.

Users paste the URI they gave ``BACKUP INTO``, so the schemes and parameters are CockroachDB's
own (pkg/cloud/azure): ``azure-blob://container/prefix``, and the older ``azure://`` and
``azure-storage://``; ``AZURE_ACCOUNT_NAME`` (always), then one way to authenticate: a shared
key (``AZURE_ACCOUNT_KEY``, base64 and URL-encoded in the URI), an app registration
(``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``, ``AZURE_TENANT_ID``), or ``AUTH=implicit``
(azure-identity's default credential chain); ``AZURE_ENVIRONMENT`` names the cloud
(AzurePublicCloud by default). Ours on top: ``ENDPOINT=`` for an emulator or a private
endpoint, as ``AWS_ENDPOINT`` is for S3.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit

from crdb_archive.errors import BadInput
from crdb_archive.storage import cloud_config
from crdb_archive.storage.cloud_config import check_params, root_of, with_scheme
from crdb_archive.storage.uri import Location, redact

SCHEMES = ("azure", "azure-blob", "azure-storage")

_USED = {
    "AUTH", "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY", "AZURE_ENVIRONMENT", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "ENDPOINT",
}
_CLIENT = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID")

# The clouds CockroachDB knows by name (go-autorest's environments): the suffix of their blob
# endpoints, and the host that issues their tokens.
ENVIRONMENTS: dict[str, tuple[str, str]] = {
    "AzurePublicCloud": ("core.windows.net", "login.microsoftonline.com"),
    "AzureUSGovernmentCloud": ("core.usgovcloudapi.net", "login.microsoftonline.us"),
    "AzureChinaCloud": ("core.chinacloudapi.cn", "login.chinacloudapi.cn"),
    "AzureGermanCloud": ("core.cloudapi.de", "login.microsoftonline.de"),
}
DEFAULT_ENVIRONMENT = "AzurePublicCloud"

# Azure's naming rules: accounts 3-24 lowercase letters and digits; containers 3-63 of
# lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")

DEFAULT_MAX_ATTEMPTS = 10
AuthKind = Literal["key", "client-secret", "implicit"]


@dataclass(frozen=True)
class AzureTarget:
    """Where and as whom to talk to Azure Blob Storage; secrets are kept out of ``repr``."""

    scheme: str
    container: str
    prefix: str
    account: str
    account_url: str
    environment: str
    auth: AuthKind
    # Whether the endpoint came from ENDPOINT or --endpoint-url rather than the environment.
    custom_endpoint: bool = False
    account_key: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message (also as the URI spelled them)."""
        values = [v for v in (self.account_key, self.client_secret) if v]
        values += [quote(v, safe="") for v in values]
        return tuple(dict.fromkeys(values))

    @property
    def authority_host(self) -> str | None:
        """The token issuer of the named cloud; None leaves azure-identity's own choice
        ($AZURE_AUTHORITY_HOST, else the public cloud) when no cloud was named."""
        return ENVIRONMENTS[self.environment][1] if self.environment_given else None

    @property
    def environment_given(self) -> bool:
        return self.environment != ""

    def below(self, prefix: str) -> AzureTarget:
        """The same target rooted at ``prefix``."""
        return AzureTarget(
            scheme=self.scheme, container=self.container, prefix=prefix, account=self.account,
            account_url=self.account_url, environment=self.environment, auth=self.auth,
            custom_endpoint=self.custom_endpoint, account_key=self.account_key,
            tenant_id=self.tenant_id, client_id=self.client_id,
            client_secret=self.client_secret)


def azure_target(location: Location, *, endpoint_url: str | None = None) -> AzureTarget:
    """Read container, prefix, account, credentials and endpoint from an ``azure://`` location.

    Raises BadInput for a malformed container or prefix, an unknown or contradictory
    parameter, or a missing account name or credential; the message names parameters, never
    their values.
    """
    where = str(location)
    container, prefix = root_of(
        location, name_pattern=_CONTAINER,
        invalid="Azure container name (3-63 lowercase letters, digits and single hyphens)",
        not_host_port=f"an {location.scheme}:// URI takes a container name, not host:port; "
                      "give a custom endpoint with ENDPOINT= or --endpoint-url")
    check_params(location, _USED)
    account = _account(location, where)
    auth, key = _auth(location, where)
    environment = _environment(location.param("AZURE_ENVIRONMENT"), where)
    endpoint = location.param("ENDPOINT") or endpoint_url or None
    return AzureTarget(
        scheme=location.scheme, container=container, prefix=prefix, account=account,
        account_url=_account_url(account, endpoint, environment, auth, where),
        environment=environment, auth=auth, custom_endpoint=endpoint is not None,
        account_key=key, tenant_id=location.param("AZURE_TENANT_ID") or None,
        client_id=location.param("AZURE_CLIENT_ID") or None,
        client_secret=location.param("AZURE_CLIENT_SECRET") or None,
    )


def _account(location: Location, where: str) -> str:
    """AZURE_ACCOUNT_NAME, which every Azure URI needs; raises BadInput."""
    account = location.param("AZURE_ACCOUNT_NAME") or ""
    if not account:
        raise BadInput(f"{where}: AZURE_ACCOUNT_NAME is missing (the storage account that "
                       "holds the container)")
    if not _ACCOUNT.match(account):
        raise BadInput(f"{where}: AZURE_ACCOUNT_NAME is not a valid storage account name "
                       "(3-24 lowercase letters and digits)")
    return account


def _account_url(account: str, endpoint: str | None, environment: str | None,
                 auth: AuthKind, where: str) -> str:
    """The Blob service URL: the endpoint given, else the account's in its cloud."""
    if endpoint is None:
        suffix = ENVIRONMENTS[environment or DEFAULT_ENVIRONMENT][0]
        return f"https://{account}.blob.{suffix}"
    account_url = _endpoint(endpoint, where)
    if auth != "key" and not account_url.lower().startswith("https://"):
        # The SDK never sends a bearer token in the clear.
        raise BadInput(f"{where}: a token from Microsoft Entra ID (AZURE_CLIENT_ID..., or "
                       "AUTH=implicit) is only sent over HTTPS: the endpoint must be "
                       "https://")
    return account_url


def _auth(location: Location, where: str) -> tuple[AuthKind, str | None]:
    """How to authenticate, as CockroachDB decides it, and the decoded account key."""
    auth = (location.param("AUTH") or "").lower()
    key_text = location.param("AZURE_ACCOUNT_KEY") or ""
    client = [name for name in _CLIENT if location.param(name)]
    if auth not in ("", "specified", "implicit"):
        raise BadInput(f"{where}: AUTH must be specified or implicit")
    if auth == "implicit":
        given = (["AZURE_ACCOUNT_KEY"] if key_text else []) + client
        if given:
            raise BadInput(f"{where}: AUTH=implicit uses azure-identity's default credential "
                           f"chain, yet the URI also carries {', '.join(given)}; drop one or "
                           "the other")
        return "implicit", None
    if key_text and not client:
        return "key", _account_key(key_text, where)
    if not key_text and len(client) == len(_CLIENT):
        return "client-secret", None
    raise BadInput(f"{where}: give exactly one way to authenticate: AZURE_ACCOUNT_KEY, or all "
                   "three of AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID, or "
                   "AUTH=implicit")


def _account_key(text: str, where: str) -> str:
    # The key is base64, whose '+' a URI must spell %2B: a bare '+' arrives as a space, and a
    # space is never part of a key, so it can only have been a '+'.
    key = text.replace(" ", "+")
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise BadInput(f"{where}: AZURE_ACCOUNT_KEY is not a base64 account key (URL-encode "
                       "it in the URI: '+' as %2B, '/' as %2F, '=' as %3D)")
    return key


def _environment(text: str | None, where: str) -> str:
    """The canonical name of the cloud, or "" when the URI names none."""
    if not text:
        return ""
    # go-autorest compares the names without regard to case.
    for name in ENVIRONMENTS:
        if name.lower() == text.lower():
            return name
    raise BadInput(f"{where}: AZURE_ENVIRONMENT {text!r} is not one of "
                   f"{', '.join(ENVIRONMENTS)}")


def _endpoint(value: str, where: str) -> str:
    value = with_scheme(value)
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{where}: the Azure endpoint {redact(value)} is not an http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise BadInput(f"{where}: the Azure endpoint {redact(value)} must be a plain URL, "
                       "without credentials or a query (a SAS token is not supported)")
    return value.rstrip("/")


def endpoint_origin(target: AzureTarget) -> str:
    """The account endpoint in one spelling, for telling two locations apart."""
    parts = urlsplit(target.account_url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def max_attempts() -> int:
    """Attempts per request: ``AZURE_MAX_ATTEMPTS`` when set, else 10; raises BadInput if bad."""
    return cloud_config.max_attempts("AZURE_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)

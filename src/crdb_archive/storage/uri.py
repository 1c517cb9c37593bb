"""Locations given as paths or URIs, and the removal of secrets from them.

Users paste the URI they gave CockroachDB's ``BACKUP INTO``; such URIs carry credentials as
query parameters (``AWS_SECRET_ACCESS_KEY=...``, ``AWS_SESSION_TOKEN=...``,
``AZURE_ACCOUNT_KEY=...``, ``AZURE_CLIENT_SECRET=...``). Every parameter's value is treated as
secret: only the scheme, host (bucket or container), path (prefix) and parameter *names* may
ever be shown or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from crdb_archive.errors import BadInput

REDACTED = "redacted"

# The parameters whose values are secrets, of every scheme (CockroachDB's external storage
# URIs). Every parameter value is redacted where a location is shown; these are also scrubbed
# from whatever text a store or its SDK answers with.
SECRET_PARAMS = frozenset({
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",  # s3://
    "CREDENTIALS", "BEARER_TOKEN",  # gs://
    "AZURE_ACCOUNT_KEY", "AZURE_CLIENT_SECRET",  # azure://
})

# Things that look like a URI with a scheme ("s3://", "file:", "nodelocal://"), not a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


@dataclass(frozen=True)
class Location:
    """A parsed location: its scheme, bucket/host, path, and parameters (values secret)."""

    scheme: str  # "file" for local paths
    host: str
    path: str
    params: tuple[tuple[str, str], ...]

    @property
    def local_path(self) -> Path:
        if self.scheme != "file":
            raise BadInput(f"{self.redacted} is not a local path")
        return Path(self.path)

    def child(self, key: str) -> Location:
        """This location with ``key`` (a relative POSIX path) appended to its path."""
        base = self.path.rstrip("/")
        if not base and self.scheme == "file":
            return Location(self.scheme, self.host, key, self.params)
        return Location(self.scheme, self.host, f"{base}/{key}", self.params)

    def parent(self) -> tuple[Location, str]:
        """The location one level up, and the last path segment; raises BadInput at the top."""
        base = self.path.rstrip("/")
        head, _, name = base.rpartition("/")
        if self.scheme == "file" and name in (".", ".."):
            # "verify ." in a bundle's directory: the directory it names, by its full path.
            return Location(self.scheme, self.host, os.path.abspath(base), self.params).parent()  # noqa: PTH100
        if not name or name in (".", ".."):
            raise BadInput(f"{self.redacted} names no object")
        if not head and self.scheme == "file" and not base.startswith("/"):
            head = "."
        return Location(self.scheme, self.host, head or "/", self.params), name

    def secret_values(self) -> tuple[str, ...]:
        """The values of the secret parameters this location carries (to scrub from text)."""
        return tuple(value for key, value in self.params if key in SECRET_PARAMS and value)

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def redacted(self) -> str:
        """The location with every parameter value and any user:password removed."""
        if self.scheme == "file" and not self.params:
            return self.path
        base = f"{self.scheme}://{self.host}{self.path}"
        if not self.params:
            return base
        return base + "?" + "&".join(f"{key}={REDACTED}" for key, _ in self.params)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"Location({self.redacted!r})"


def parse_location(text: str) -> Location:
    """Parse a local path, a ``file://`` URI or a ``scheme://host/path?params`` URI.

    Raises BadInput for an empty location.
    """
    if not text.strip():
        raise BadInput("empty location: expected a directory path or a URI")
    match = _SCHEME.match(text)
    # "C:\\..." style drive letters are not schemes; neither is a bare relative path.
    if match is None or len(match.group(1)) == 1:
        return Location("file", "", text, ())
    parts = urlsplit(text)
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    scheme = parts.scheme.lower()
    path = unquote(parts.path)
    if scheme == "file":
        return Location("file", "", path, params)
    return Location(scheme, host, path, params)


def redact(text: str) -> str:
    """Any URI-looking text with its secrets removed; other text unchanged."""
    if _SCHEME.match(text) is None:
        return text
    try:
        return parse_location(text).redacted
    except ValueError:
        return "<unparseable location>"


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every known secret value replaced, and folded onto one line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return " ".join(text.split())

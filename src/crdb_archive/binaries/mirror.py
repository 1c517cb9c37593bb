"""Where release archives come from: the official site, an HTTP mirror, or a local directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit
from urllib.request import url2pathname

from crdb_archive.errors import BadInput

DEFAULT_MIRROR_URL = "https://binaries.cockroachdb.com"
MIRROR_ENV = "CRDB_ARCHIVE_MIRROR"

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


@dataclass(frozen=True)
class Mirror:
    """A base URL (http or https) or a local directory that holds the official file names.

    ``url`` may carry credentials (``https://user:token@host/path``); everything shown to a
    user goes through :meth:`display_url`, which drops them.
    """

    url: str
    directory: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.directory is not None

    def location(self, name: str) -> str:
        """The URL of the file ``name`` on this mirror, credentials included (never show it)."""
        if self.directory is not None:
            return (self.directory / name).as_uri()
        return f"{self.url}/{quote(name)}"

    def display_url(self, name: str) -> str:
        """The URL of the file ``name`` on this mirror, safe to print or record."""
        return _without_credentials(self.location(name))

    @property
    def origin(self) -> str:
        """Where this mirror's files come from, credentials removed: what the download cache
        keys its entries by and what a bundle records as their source.

        Scheme and host are lower-cased and a default port dropped, so that one server has
        one origin however it is spelled.
        """
        if self.directory is not None:
            return self.directory.as_uri()
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        host = parts.netloc.rpartition("@")[2].lower()
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port is not None:
            host = host.removesuffix(default_port)
        return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))

    @property
    def is_official(self) -> bool:
        """True for https://binaries.cockroachdb.com itself: the only source that vouches for
        a release archive (an HTTPS connection to Cockroach Labs' own site)."""
        return self.directory is None and self.origin == DEFAULT_MIRROR_URL

    def __str__(self) -> str:
        if self.directory is not None:
            return str(self.directory)
        return _without_credentials(self.url)


DEFAULT_MIRROR = Mirror(DEFAULT_MIRROR_URL)


def official_url(name: str) -> str:
    """The URL of a file on binaries.cockroachdb.com, whatever mirror it was fetched from."""
    return DEFAULT_MIRROR.location(name)


def resolve_mirror(value: str | None) -> Mirror:
    """The mirror named by ``value``, else by ``CRDB_ARCHIVE_MIRROR``, else the official site.

    Accepts an http(s) base URL, a ``file://`` URL or a directory path. Raises BadInput for
    another scheme, a URL with a query or fragment, or a directory that does not exist.
    """
    if value is None or not value.strip():
        value = os.environ.get(MIRROR_ENV, "").strip() or DEFAULT_MIRROR_URL
    value = value.strip()
    if "://" not in value:
        return _local_mirror(Path(value).expanduser(), value)
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    shown = _without_credentials(value)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadInput(f"mirror {shown}: a file:// URL must name a local directory")
        return _local_mirror(Path(url2pathname(parts.path)), shown)
    if scheme not in ("http", "https"):
        raise BadInput(
            f"mirror {shown}: unsupported scheme {parts.scheme!r}; use an http(s) URL, a "
            "file:// URL or a directory"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise BadInput(f"mirror {shown}: the URL has an invalid port") from None
    if not parts.hostname:
        raise BadInput(f"mirror {shown}: the URL names no host")
    if parts.query or parts.fragment:
        raise BadInput(
            f"mirror {shown}: a mirror is a base URL that file names are appended to; it "
            "cannot have a query or a fragment"
        )
    base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return Mirror(base)


def _local_mirror(directory: Path, shown: str) -> Mirror:
    if not directory.is_dir():
        raise BadInput(f"mirror {shown}: no such directory")
    return Mirror(directory.absolute().as_uri(), directory.absolute())


def _without_credentials(url: str) -> str:
    # A query may carry a token as well as the user-info part does.
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

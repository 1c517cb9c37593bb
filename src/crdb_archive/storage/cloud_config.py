"""What reading a cloud storage URI checks alike for S3, Cloud Storage and Azure: the bucket
(or container) name and key prefix, the parameters, an endpoint's scheme, the attempt count."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from crdb_archive.errors import BadInput
from crdb_archive.storage.base import validate_key
from crdb_archive.storage.uri import Location


def root_of(location: Location, *, name_pattern: re.Pattern[str], invalid: str,
            not_host_port: str) -> tuple[str, str]:
    """The bucket (or container) and key prefix of ``location``.

    Raises BadInput, saying ``not_host_port`` for a host:port and that the name is not a valid
    ``invalid`` for one ``name_pattern`` refuses.
    """
    where = str(location)
    name = location.host
    if ":" in name:
        raise BadInput(f"{where}: {not_host_port}")
    if not name_pattern.match(name):
        raise BadInput(f"{where}: {name!r} is not a valid {invalid}")
    prefix = location.path.strip("/")
    if prefix:
        validate_key(prefix)
    return name, prefix


def check_params(location: Location, known: Collection[str],
                 unsupported: Mapping[str, str] | None = None, *, where: str | None = None,
                 kind: str = "parameter") -> None:
    """Raises BadInput for a parameter that is unsupported (with the text ``unsupported`` has
    for it), unknown (an unknown ``kind``), or given twice; the message starts with ``where``
    (the location, by default)."""
    where = str(location) if where is None else where
    names = [name for name, _ in location.params]
    for name in names:
        if unsupported and name in unsupported:
            raise BadInput(f"{where}: {unsupported[name]}")
        if name not in known:
            raise BadInput(f"{where}: unknown {kind} {name}")
        if names.count(name) > 1:
            raise BadInput(f"{where}: parameter {name} given twice")


def check_aws_auth(where: str, auth: str, key_id: str | None, secret: str | None,
                   token: str | None) -> None:
    """Raises BadInput unless AUTH (lower case, "" when not given) and the keys in a URI
    agree, as CockroachDB reads them: keys without AUTH mean AUTH=specified."""
    if auth not in ("", "specified", "implicit"):
        raise BadInput(f"{where}: AUTH must be specified or implicit")
    if auth == "implicit" and (key_id or secret or token):
        raise BadInput(f"{where}: AUTH=implicit uses the default credential chain, yet the URI "
                       "also carries keys; drop one or the other")
    if (auth == "specified" or key_id or secret) and not (key_id and secret):
        raise BadInput(f"{where}: AUTH=specified needs both AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY")


def with_scheme(value: str, default: str = "https") -> str:
    """An endpoint as a URL: ``default``:// before one given as a bare host."""
    return value if "://" in value else f"{default}://{value}"


def http_endpoint(value: str, where: str, name: str) -> str:
    """An endpoint as an http(s) URL, https:// before one given as a bare host; raises
    BadInput saying that ``name`` (the endpoint, without secrets) is not one."""
    value = with_scheme(value)
    if urlsplit(value).scheme not in ("http", "https"):
        raise BadInput(f"{where}: {name} is not an http(s) URL")
    return value


def max_attempts(variable: str, default: int) -> int:
    """Attempts per request: ``$variable`` when set, else ``default``; raises BadInput if it is
    not a positive integer."""
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(f"{variable}={text!r}: expected a positive integer")
    return value

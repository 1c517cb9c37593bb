"""Spec keys that name a place: a location (local directory or object storage URI) and the
endpoint of its store."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from crdb_archive.jobs.spec_table import SpecTable
from crdb_archive.storage.places import is_remote, location_problem
from crdb_archive.storage.uri import parse_location, redact


def read_location(table: SpecTable, key: str, base: Path) -> str | None:
    """A local directory (made absolute) or an object storage URI (s3://, gs://,
    azure-blob://); the text keeps its credentials."""
    text = table.string(key, required=True, expand=True)
    if text is None:
        return None
    location = parse_location(text)
    problem = location_problem(location)
    if problem is not None:
        table.problem(key, problem)
        return None
    if location.scheme == "file":
        return os.path.normpath(base / location.path)
    return text.strip()


def read_endpoint_url(table: SpecTable, uri: str | None) -> str | None:
    """The endpoint of the location's store (an S3-compatible store, a Cloud Storage or Azure
    emulator, a sovereign cloud); empty means the default one."""
    text = table.string("endpoint_url", expand=True, allow_empty=True)
    if text is None:
        return None
    text = text.strip()
    if uri is not None and not is_remote(parse_location(uri)):
        table.problem("endpoint_url", "applies only to locations in object storage (s3://, "
                      "gs://, azure-blob://), not to a local path")
        return None
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        table.problem("endpoint_url", f"{redact(text)} is not an http(s) URL")
        return None
    return text

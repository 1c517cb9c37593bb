"""Bundle format 1: file names, manifest lines and tag-file syntax (BagIt 1.0, RFC 8493)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# No bundle may be named like a storage's staging area (``.<name>.partial`` on disk).
from crdb_archive.storage.base import STAGING_SUFFIX

FORMAT_VERSION = 1

BAGIT_TXT = "bagit.txt"
BAG_INFO = "bag-info.txt"
MANIFEST_SHA256 = "manifest-sha256.txt"
MANIFEST_BLAKE3 = "manifest-blake3.txt"
PAYLOAD_SIZES = "payload-sizes.txt"
DESCRIPTION = "crdb-archive.json"
RESTORE_MD = "RESTORE.md"
TAGMANIFEST_SHA256 = "tagmanifest-sha256.txt"
# A signed bundle's SSHSIG of the tag manifest. It signs the tag manifest, so the tag manifest
# cannot list it: a tag file outside the tag manifest, which RFC 8493 allows.
SIGNATURE = "tagmanifest-sha256.txt.sig"
# bag-info.txt label naming the signing key's fingerprint (covered by the tag manifest).
SIGNING_KEY_LABEL = "Bundle-Signing-Key"

PAYLOAD_DIR = "data"
BACKUP_DIR = "data/backup"
BINARY_DIR = "data/cockroach"
# An export bundle's schema files (DESIGN 3). ``schema.sql`` is the schema file verbatim: the
# loader parses it again rather than trusting a translation.
SCHEMA_SQL_PATH = "data/schema/schema.sql"
POSTGRESQL_SQL_PATH = "data/schema/postgresql.sql"

# Every tag file of format 1, in the order they are written; the tag manifest comes last and
# lists all the others.
TAG_FILES = (
    BAGIT_TXT,
    MANIFEST_SHA256,
    MANIFEST_BLAKE3,
    PAYLOAD_SIZES,
    BAG_INFO,
    DESCRIPTION,
    RESTORE_MD,
)
ALL_TAG_FILES = (*TAG_FILES, TAGMANIFEST_SHA256)

BAGIT_TXT_CONTENT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def is_valid_name(name: str) -> bool:
    """Bundle names are portable file names: letters, digits, ``._+-``; no leading dot."""
    return bool(_NAME.match(name)) and not name.endswith((".tar", STAGING_SUFFIX))


def encode_path(path: str) -> str:
    """Percent-encode the characters BagIt manifests cannot hold literally (RFC 8493 2.1.3)."""
    if "%" not in path and "\r" not in path and "\n" not in path:
        return path  # nearly every path: no three copies of it
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_path(path: str) -> str:
    if "%" not in path:  # nearly every path: skip five scans of it
        return path
    return path.replace("%0A", "\n").replace("%0D", "\r").replace("%0a", "\n").replace(
        "%0d", "\r").replace("%25", "%")


def manifest_lines(entries: Iterable[tuple[str, str]]) -> Iterator[str]:
    """``<digest>  <path>`` lines, sorted by path: BagIt and ``sha256sum -c`` both read them."""
    for path, digest in sorted(entries):
        yield f"{digest}  {encode_path(path)}\n"


def is_safe_relative(path: str) -> bool:
    """A bundle-relative POSIX path that stays inside the bundle."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))

"""Official CockroachDB release archives: names, mirrors, verified download, cache, extraction.

Old releases' downloads are being removed (versions.csv ``binary_removal_date``), so fetching
the exact official archive, byte for byte and checked against its published SHA-256, is the
part of archiving that cannot be redone later (DESIGN 2.2). What is fetched records where it
came from, and only the official site over HTTPS makes it official (DESIGN 3, Provenance).
"""

from crdb_archive.binaries.cache import CACHE_ENV, ArchiveCache, default_cache_dir
from crdb_archive.binaries.checksums import checksum_file_name, parse_checksum_file
from crdb_archive.binaries.extract import (
    MARKER,
    ExtractedBinary,
    extract_archive,
    require_directory,
    require_free_target,
)
from crdb_archive.binaries.fetch import (
    FetchedArchive,
    PublishedChecksum,
    fetch_published_checksum,
    fetch_release_archive,
)
from crdb_archive.binaries.fetch_binary import FetchedBinary, FetchResult, fetch_binaries
from crdb_archive.binaries.member_rules import MAX_MEMBERS, MAX_TOTAL_BYTES
from crdb_archive.binaries.mirror import (
    DEFAULT_MIRROR_URL,
    MIRROR_ENV,
    Mirror,
    official_url,
    resolve_mirror,
)
from crdb_archive.binaries.platforms import (
    DEFAULT_PLATFORM,
    PLATFORMS,
    archive_name,
    archive_stem,
    host_platform,
    resolve_release,
)
from crdb_archive.binaries.transfer import DEFAULT_POLICY, NetworkPolicy, http_session
from crdb_archive.binaries.version_check import (
    VersionCheck,
    check_binary_version,
    version_not_run,
)

__all__ = [
    "ArchiveCache",
    "CACHE_ENV",
    "DEFAULT_MIRROR_URL",
    "DEFAULT_PLATFORM",
    "DEFAULT_POLICY",
    "ExtractedBinary",
    "FetchResult",
    "FetchedArchive",
    "FetchedBinary",
    "MARKER",
    "MAX_MEMBERS",
    "MAX_TOTAL_BYTES",
    "MIRROR_ENV",
    "Mirror",
    "NetworkPolicy",
    "PLATFORMS",
    "PublishedChecksum",
    "VersionCheck",
    "archive_name",
    "archive_stem",
    "check_binary_version",
    "checksum_file_name",
    "default_cache_dir",
    "extract_archive",
    "fetch_binaries",
    "fetch_published_checksum",
    "fetch_release_archive",
    "host_platform",
    "http_session",
    "official_url",
    "parse_checksum_file",
    "require_directory",
    "require_free_target",
    "resolve_mirror",
    "resolve_release",
    "version_not_run",
]

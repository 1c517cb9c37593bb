"""Fetching official release archives: through the cache, verified, checked, into a directory.

Every archive and checksum carries where it came from (its source URL, credentials removed,
and whether the cache served it), so that nothing is called official unless it came from
https://binaries.cockroachdb.com over HTTPS, directly or through a cache entry fetched from
there (DESIGN 3, Provenance).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import requests

from crdb_archive.binaries.cache import ArchiveCache, CacheEntry, default_cache_dir
from crdb_archive.binaries.checksums import (
    checksum_file_name,
    download_checksum_file,
    parse_checksum_file,
)
from crdb_archive.binaries.extract import require_directory
from crdb_archive.binaries.member_rules import ArchiveRefusal
from crdb_archive.binaries.members import MAX_ARCHIVE_BYTES, read_release_archive
from crdb_archive.binaries.mirror import Mirror, resolve_mirror
from crdb_archive.binaries.platforms import archive_name, check_platform, resolve_release
from crdb_archive.binaries.staging import StagedFile, describe_os_error
from crdb_archive.binaries.transfer import DEFAULT_POLICY, NetworkPolicy, download, http_session
from crdb_archive.errors import (
    BadInput,
    ChecksumMismatch,
    MalformedChecksumFile,
    NotAReleaseArchive,
    StorageError,
)
from crdb_archive.hashing import CHUNK_SIZE, Digests, same_digest
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.versions import Release


@dataclass(frozen=True)
class PublishedChecksum:
    """A release's published ``.sha256sum`` file, and where it came from."""

    sha256: str
    content: bytes  # the file verbatim
    url: str  # where it was fetched from, credentials removed
    from_cache: bool
    official: bool  # fetched over HTTPS from binaries.cockroachdb.com (perhaps via the cache)


@dataclass(frozen=True)
class FetchedArchive:
    """A release archive on local disk, with what is known about its integrity and origin."""

    release: str
    platform: str
    path: Path
    url: str  # where the archive came from (credentials removed), from the cache or not
    size: int
    sha256: str
    blake3: str
    published: PublishedChecksum | None  # None when the release has no published checksum
    from_cache: bool
    official_source: bool  # the archive itself came from binaries.cockroachdb.com over HTTPS

    @property
    def published_sha256(self) -> str | None:
        return self.published.sha256 if self.published is not None else None

    @property
    def published_checksum_file(self) -> bytes | None:
        return self.published.content if self.published is not None else None

    @property
    def verified(self) -> bool:
        """True iff the archive matches a published checksum (from wherever it came)."""
        return self.published is not None

    @property
    def checksum_official(self) -> bool:
        """True iff the checksum it matches came from the official site over HTTPS."""
        return self.published is not None and self.published.official

    @property
    def official(self) -> bool:
        """True iff both the archive and its checksum came from the official site."""
        return self.official_source and self.checksum_official

    def to_json(self) -> dict[str, object]:
        """The entry of this file in ``fetch-binary --json``."""
        return {
            "platform": self.platform,
            "path": str(self.path),
            "url": self.url,
            "bytes": self.size,
            "sha256": self.sha256,
            "blake3": self.blake3,
            "published_sha256": self.published_sha256,
            "published_checksum_url": self.published.url if self.published else None,
            "verified": self.verified,
            "official": self.official,
            "release": self.release,
            "from_cache": self.from_cache,
            "published_checksum_from_cache": (self.published.from_cache
                                              if self.published else None),
        }


def fetch_release_archive(
    release: str,
    platform: str,
    dest_dir: Path,
    *,
    mirror: Mirror | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    replace: bool = False,
    progress: ProgressCallback = no_progress,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> FetchedArchive:
    """Put the archive of ``release`` for ``platform`` from ``mirror`` (default: the official
    site) at ``dest_dir/<archive name>``.

    The archive comes from the cache when it holds a copy fetched from that same mirror that
    re-hashes correctly, else from the mirror (then it is added to the cache). When the release
    publishes a checksum, the archive must match it; the checksum file is cached too, so a
    cache hit needs no network. Either way the archive must have the structure of an official
    one before it is kept anywhere. An existing different file of the archive's name is
    replaced only with ``replace``; an identical one is kept.

    Raises InvalidVersion/UnknownVersion/UnknownPlatform (exit 2) for a release or platform
    that does not exist; BadInput (exit 2) when ``dest_dir`` is not a directory or holds
    another file of that name; ChecksumMismatch, MalformedChecksumFile or NotAReleaseArchive
    (exit 1) when the archive cannot be vouched for; NotFoundOnMirror (exit 3) when the mirror
    lacks the archive, or lacks the checksum file of a release that publishes one (an
    unverifiable archive is not kept); NetworkError or StorageError (exit 3) when the transfer
    or the disk fails. On failure nothing is left in ``dest_dir`` and nothing enters the cache.
    """
    known = resolve_release(release)
    check_platform(known, platform)
    source = mirror if mirror is not None else resolve_mirror(None)
    fetch = _Fetch(known, platform, source, _cache(cache_dir, use_cache), policy, progress)
    with http_session(policy) as session:
        return fetch.into(dest_dir, session, replace=replace)


def fetch_published_checksum(
    release: str,
    platform: str,
    *,
    mirror: Mirror | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> PublishedChecksum | None:
    """The published checksum of a release's archive for ``platform``, or None if none exists.

    Taken from the cache when it holds the file as fetched from ``mirror``, else from the
    mirror (and cached). Raises as :func:`fetch_release_archive` does; NotFoundOnMirror when
    the mirror lacks the checksum file of a release that publishes one.
    """
    known = resolve_release(release)
    check_platform(known, platform)
    if not known.has_sha256sum:
        return None
    source = mirror if mirror is not None else resolve_mirror(None)
    fetch = _Fetch(known, platform, source, _cache(cache_dir, use_cache), policy, no_progress)
    with http_session(policy) as session:
        published = fetch.published(session)
    fetch.remember_checksum(published)
    return published


def _cache(cache_dir: Path | None, use_cache: bool) -> ArchiveCache | None:
    if not use_cache:
        return None
    return ArchiveCache(cache_dir if cache_dir is not None else default_cache_dir())


class _Fetch:
    """One archive on its way from cache or mirror into a directory."""

    def __init__(
        self,
        release: Release,
        platform: str,
        mirror: Mirror,
        cache: ArchiveCache | None,
        policy: NetworkPolicy,
        progress: ProgressCallback,
    ) -> None:
        self.release = release
        self.platform = platform
        self.mirror = mirror
        self.origin = mirror.origin
        self.cache = cache
        self.policy = policy
        self.progress = progress
        self.name = archive_name(release.name, platform)

    def published(self, session: requests.Session) -> PublishedChecksum:
        """The checksum file as this mirror publishes it (from the cache when it has it)."""
        url = self.mirror.display_url(checksum_file_name(self.name))
        official = self.mirror.is_official
        if self.cache is not None:
            cached = self.cache.checksum_file(self.origin, self.name)
            if cached is not None:
                try:
                    sha256 = parse_checksum_file(cached, self.name)
                    return PublishedChecksum(sha256, cached, url, True, official)
                except MalformedChecksumFile:
                    self.cache.forget_checksum_file(self.origin, self.name)
        content = download_checksum_file(session, self.mirror, self.name, policy=self.policy)
        return PublishedChecksum(parse_checksum_file(content, self.name), content, url, False,
                                 official)

    def remember_checksum(self, published: PublishedChecksum | None) -> None:
        if self.cache is not None and published is not None and not published.from_cache:
            self.cache.store_checksum_file(self.origin, self.name, published.content)

    def into(self, dest_dir: Path, session: requests.Session, *,
             replace: bool) -> FetchedArchive:
        require_directory(dest_dir)
        final = dest_dir / self.name
        existing = _existing_file(final, replace=replace)
        published: PublishedChecksum | None = None
        if self.release.has_sha256sum:
            # Before the archive: a mirror without the checksum costs no 100 MB download.
            published = self.published(session)
            if existing is not None and not same_digest(existing, published.sha256):
                raise _differs(final)
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot write {dest_dir}: {describe_os_error(error)}") from None
        with StagedFile(final) as staged:
            digests, entry = self._fill(staged, published, session)
            url = entry.url if entry is not None else self.mirror.display_url(self.name)
            if published is not None and not same_digest(digests.sha256, published.sha256):
                if published.from_cache and self.cache is not None:
                    # The cached checksum file may be the stale party; fetch it anew next time.
                    self.cache.forget_checksum_file(self.origin, self.name)
                raise ChecksumMismatch(
                    f"{self.name} from {url} has SHA-256 {digests.sha256}, but the published "
                    f"checksum is {published.sha256}; the download was discarded"
                )
            staged.flush()
            self._check_structure(staged.path, url, entry)
            if self.cache is not None and entry is None:
                self.cache.add(self.origin, self.name, url, staged.path, digests)
            if existing is not None:
                if not same_digest(existing, digests.sha256):
                    raise _differs(final)
                staged.discard()  # the file already there holds these very bytes
            else:
                staged.commit()
        self.remember_checksum(published)
        return FetchedArchive(
            release=self.release.name,
            platform=self.platform,
            path=final,
            url=url,
            size=digests.size,
            sha256=digests.sha256,
            blake3=digests.blake3,
            published=published,
            from_cache=entry is not None,
            official_source=self.mirror.is_official,
        )

    def _fill(
        self, staged: StagedFile, published: PublishedChecksum | None,
        session: requests.Session,
    ) -> tuple[Digests, CacheEntry | None]:
        """Write the archive into ``staged``: its digests, and the cache entry it came from."""
        cache = self.cache
        entry = cache.entry(self.origin, self.name) if cache is not None else None
        if cache is not None and entry is not None:
            if published is None or same_digest(entry.sha256, published.sha256):
                digests = cache.copy_out(
                    entry, staged, progress=self.progress, task=f"{self.name} (from cache)"
                )
                if digests is not None:
                    return digests, entry
                staged.restart()
            else:
                cache.forget(entry, damaged=False)
        digests = download(
            session, self.mirror, self.name, _Bounded(staged, self.name, self.mirror),
            policy=self.policy, progress=self.progress, task=self.name,
        )
        return digests, None

    def _check_structure(self, path: Path, url: str, entry: CacheEntry | None) -> None:
        """Refuse a file that cannot be an official archive, whatever checksum vouches for it."""
        try:
            with path.open("rb") as handle:
                read_release_archive(handle, self.name)
        except ArchiveRefusal as refusal:
            if entry is not None and self.cache is not None:
                self.cache.forget(entry, damaged=True)
            raise NotAReleaseArchive(
                f"{self.name} from {url} is not a CockroachDB release archive: it "
                f"{refusal.reason}; it was not kept"
            ) from None
        except OSError as error:
            raise StorageError(f"cannot read {path}: {describe_os_error(error)}") from None


class _Bounded:
    """A download sink that refuses more bytes than a release archive can have."""

    def __init__(self, staged: StagedFile, name: str, mirror: Mirror) -> None:
        self._staged = staged
        self._name = name
        self._mirror = mirror
        self._size = 0

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_ARCHIVE_BYTES:
            raise NotAReleaseArchive(
                f"{self._name} from {self._mirror.display_url(self._name)} is larger than "
                f"{MAX_ARCHIVE_BYTES >> 20} MiB: not a CockroachDB release archive; it was not "
                "kept"
            )
        self._staged.write(chunk)

    def restart(self) -> None:
        self._size = 0
        self._staged.restart()


def _existing_file(path: Path, *, replace: bool) -> str | None:
    """The SHA-256 of a file already at ``path`` that must be kept, or None when there is
    none (or ``replace`` allows replacing it); raises BadInput for a folder or a special file.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageError(f"cannot read {path}: {describe_os_error(error)}") from None
    if stat.S_ISDIR(found.st_mode) or not (stat.S_ISREG(found.st_mode)
                                           or stat.S_ISLNK(found.st_mode)):
        raise BadInput(f"{path} exists and is not a file; it was left as it is")
    if replace:
        return None
    if stat.S_ISLNK(found.st_mode):
        raise BadInput(f"{path} exists and is a symbolic link; it was left as it is (pass "
                       "--replace to replace the link itself)")
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
    except OSError as error:
        raise StorageError(f"cannot read {path}: {describe_os_error(error)}") from None
    return digest.hexdigest()


def _differs(path: Path) -> BadInput:
    return BadInput(f"{path} exists and differs from the verified archive; it was left as it "
                    "is (pass --replace to replace it)")

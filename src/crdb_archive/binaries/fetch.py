"""Fetching official release archives: through the cache, verified, into a directory."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

from crdb_archive.binaries.cache import ArchiveCache, default_cache_dir
from crdb_archive.binaries.checksums import download_checksum_file, parse_checksum_file
from crdb_archive.binaries.extract import ExtractedBinary, extract_archive
from crdb_archive.binaries.mirror import Mirror, resolve_mirror
from crdb_archive.binaries.platforms import (
    archive_name,
    archive_stem,
    check_platform,
    resolve_release,
)
from crdb_archive.binaries.staging import StagedFile, describe_os_error
from crdb_archive.binaries.transfer import DEFAULT_POLICY, NetworkPolicy, download, http_session
from crdb_archive.binaries.version_check import VersionCheck, check_binary_version
from crdb_archive.errors import ChecksumMismatch, MalformedChecksumFile, StorageError
from crdb_archive.hashing import Digests, same_digest
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.versions import Release, release_index


@dataclass(frozen=True)
class FetchedArchive:
    """An official release archive on local disk, with what is known about its integrity."""

    release: str
    platform: str
    path: Path
    url: str  # where the mirror serves it (credentials removed)
    size: int
    sha256: str
    blake3: str
    published_sha256: str | None  # None when the release has no published checksum
    published_checksum_file: bytes | None  # the .sha256sum file verbatim, None if none
    verified: bool  # True iff published_sha256 exists and matches
    from_cache: bool

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
            "verified": self.verified,
            "release": self.release,
            "from_cache": self.from_cache,
        }


def fetch_release_archive(
    release: str,
    platform: str,
    dest_dir: Path,
    *,
    mirror: Mirror | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: ProgressCallback = no_progress,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> FetchedArchive:
    """Put the official archive of ``release`` for ``platform`` at ``dest_dir/<archive name>``.

    The archive comes from the cache when it holds a copy that re-hashes correctly, else from
    the mirror (then it is added to the cache). When the release publishes a checksum, the
    archive must match it; the checksum file is cached too, so a cache hit needs no network.

    Raises InvalidVersion/UnknownVersion/UnknownPlatform (exit 2) for a release or platform
    that does not exist; ChecksumMismatch or MalformedChecksumFile (exit 1) when the archive
    cannot be vouched for; NotFoundOnMirror (exit 3) when the mirror lacks the archive, or
    lacks the checksum file of a release that publishes one (an unverifiable archive is not
    kept); NetworkError or StorageError (exit 3) when the transfer or the disk fails. On
    failure nothing is left in ``dest_dir``.
    """
    known = resolve_release(release)
    check_platform(known, platform)
    source = mirror if mirror is not None else resolve_mirror(None)
    fetch = _Fetch(known, platform, source, _cache(cache_dir, use_cache), policy, progress)
    with http_session(policy) as session:
        return fetch.into(dest_dir, session)


def fetch_published_checksum(
    release: str,
    platform: str,
    *,
    mirror: Mirror | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> str | None:
    """The published SHA-256 of a release's archive for ``platform``, or None if none exists.

    Taken from the cache when it holds the checksum file, else from the mirror (and cached).
    Raises as :func:`fetch_release_archive` does; NotFoundOnMirror when the mirror lacks the
    checksum file of a release that publishes one.
    """
    known = resolve_release(release)
    check_platform(known, platform)
    if not known.has_sha256sum:
        return None
    source = mirror if mirror is not None else resolve_mirror(None)
    fetch = _Fetch(known, platform, source, _cache(cache_dir, use_cache), policy, no_progress)
    with http_session(policy) as session:
        content, published, from_cache = fetch.published(session)
    if fetch.cache is not None and not from_cache:
        fetch.cache.store_checksum_file(fetch.name, content)
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
        self.cache = cache
        self.policy = policy
        self.progress = progress
        self.name = archive_name(release.name, platform)

    def published(self, session: requests.Session) -> tuple[bytes, str, bool]:
        """The checksum file, its SHA-256, and whether it came from the cache."""
        if self.cache is not None:
            cached = self.cache.checksum_file(self.name)
            if cached is not None:
                try:
                    return cached, parse_checksum_file(cached, self.name), True
                except MalformedChecksumFile:
                    self.cache.forget_checksum_file(self.name)
        content = download_checksum_file(session, self.mirror, self.name, policy=self.policy)
        return content, parse_checksum_file(content, self.name), False

    def into(self, dest_dir: Path, session: requests.Session) -> FetchedArchive:
        checksum_file: bytes | None = None
        published: str | None = None
        checksum_cached = False
        if self.release.has_sha256sum:
            # Before the archive: a mirror without the checksum costs no 100 MB download.
            checksum_file, published, checksum_cached = self.published(session)
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot write {dest_dir}: {describe_os_error(error)}") from None
        with StagedFile(dest_dir / self.name) as staged:
            digests, from_cache = self._fill(staged, published, session)
            if published is not None and not same_digest(digests.sha256, published):
                if checksum_cached and self.cache is not None:
                    # The cached checksum file may be the stale party; fetch it anew next time.
                    self.cache.forget_checksum_file(self.name)
                raise ChecksumMismatch(
                    f"{self.name} from {self.mirror.display_url(self.name)} has SHA-256 "
                    f"{digests.sha256}, but the published checksum is {published}; the "
                    "download was discarded"
                )
            staged.commit()
        if self.cache is not None and checksum_file is not None and not checksum_cached:
            self.cache.store_checksum_file(self.name, checksum_file)
        return FetchedArchive(
            release=self.release.name,
            platform=self.platform,
            path=dest_dir / self.name,
            url=self.mirror.display_url(self.name),
            size=digests.size,
            sha256=digests.sha256,
            blake3=digests.blake3,
            published_sha256=published,
            published_checksum_file=checksum_file,
            verified=published is not None,
            from_cache=from_cache,
        )

    def _fill(
        self, staged: StagedFile, published: str | None, session: requests.Session
    ) -> tuple[Digests, bool]:
        """Write the archive into ``staged``; returns its digests and whether the cache had it."""
        cache = self.cache
        if cache is None:
            return self._download(session, staged), False
        entry = cache.entry(self.name)
        if entry is not None:
            if published is None or same_digest(entry.sha256, published):
                digests = cache.copy_out(
                    entry, staged, progress=self.progress, task=f"{self.name} (from cache)"
                )
                if digests is not None:
                    return digests, True
                staged.restart()
            else:
                cache.forget(entry)
        with cache.staged_blob() as blob:
            downloaded = self._download(session, blob)
            if published is not None and not same_digest(downloaded.sha256, published):
                return downloaded, False  # refused by the caller; never enters the cache
            entry = cache.add(self.name, blob, downloaded)
        # A local copy of what was just downloaded: fast, and not worth a second progress bar.
        digests = cache.copy_out(entry, staged)
        if digests is None:
            raise StorageError(
                f"the download cache {cache.root} did not keep {self.name} intact; check the "
                "disk, or disable the cache"
            )
        return digests, False

    def _download(self, session: requests.Session, sink: StagedFile) -> Digests:
        return download(
            session, self.mirror, self.name, sink,
            policy=self.policy, progress=self.progress, task=self.name,
        )


# --- the fetch-binary command ------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedBinary:
    """One platform's archive, and what extracting and running it showed."""

    archive: FetchedArchive
    extracted: ExtractedBinary | None = None
    version_check: VersionCheck | None = None

    def to_json(self) -> dict[str, object]:
        entry = self.archive.to_json()
        if self.extracted is not None:
            extracted: dict[str, object] = self.extracted.to_json()
            if self.version_check is not None:
                extracted["version_check"] = self.version_check.to_json()
            entry["extracted"] = extracted
        return entry


@dataclass(frozen=True)
class FetchResult:
    """The answer of ``fetch-binary``: the files, and what the user must be told."""

    release: str
    files: list[FetchedBinary]
    warnings: list[str]

    @property
    def version_mismatch(self) -> bool:
        """True when an extracted binary reported another release than the one asked for."""
        return any(f.version_check is not None and f.version_check.matches is False
                   for f in self.files)

    def to_json(self) -> dict[str, object]:
        return {
            "release": self.release,
            "files": [f.to_json() for f in self.files],
            "warnings": self.warnings,
        }


def fetch_binaries(
    release: str,
    platforms: Iterable[str],
    dest_dir: Path,
    *,
    mirror: Mirror | str | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    extract: bool = False,
    progress: ProgressCallback = no_progress,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> FetchResult:
    """Fetch a release's archives for several platforms; optionally extract and run them.

    All platforms are validated before anything is downloaded. Raises as
    :func:`fetch_release_archive` and :func:`extract_archive` do; on failure, the files this
    call created in ``dest_dir`` are removed again.
    """
    known = resolve_release(release)
    wanted = list(dict.fromkeys(platforms))
    for platform in wanted:
        check_platform(known, platform)
    source = mirror if isinstance(mirror, Mirror) else resolve_mirror(mirror)
    created: list[Path] = []
    files: list[FetchedBinary] = []
    try:
        for platform in wanted:
            name = archive_name(known.name, platform)
            if not (dest_dir / name).exists():
                created.append(dest_dir / name)
            archive = fetch_release_archive(
                known.name, platform, dest_dir, mirror=source, cache_dir=cache_dir,
                use_cache=use_cache, progress=progress, policy=policy,
            )
            if not extract:
                files.append(FetchedBinary(archive))
                continue
            folder = dest_dir / archive_stem(known.name, platform)
            if not folder.exists():
                created.append(folder)
            extracted = extract_archive(archive.path, dest_dir)
            check = check_binary_version(extracted.cockroach, known.name, platform=platform)
            files.append(FetchedBinary(archive, extracted, check))
    except BaseException:
        for path in reversed(created):
            _remove(path)
        raise
    warnings = release_index().parse(known.name).warnings()
    if not known.has_sha256sum:
        warnings.append(
            f"{known.name} has no published checksum (Cockroach Labs publishes them from "
            "v21.1.0): the archive was downloaded but could not be verified"
        )
    return FetchResult(known.name, files, warnings)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


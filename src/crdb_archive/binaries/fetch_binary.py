"""The fetch-binary command: a release's archives for several platforms, optionally extracted."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.binaries.extract import ExtractedBinary, extract_archive, require_directory
from crdb_archive.binaries.fetch import FetchedArchive, fetch_release_archive
from crdb_archive.binaries.mirror import DEFAULT_MIRROR_URL, Mirror, resolve_mirror
from crdb_archive.binaries.platforms import (
    archive_name,
    archive_stem,
    check_platform,
    resolve_release,
)
from crdb_archive.binaries.transfer import DEFAULT_POLICY, NetworkPolicy
from crdb_archive.binaries.version_check import (
    VersionCheck,
    check_binary_version,
    version_not_run,
)
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.versions import release_index


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
    replace: bool = False,
    progress: ProgressCallback = no_progress,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> FetchResult:
    """Fetch a release's archives for several platforms; optionally extract them, and run
    ``cockroach version`` where the archive matched a checksum published over HTTPS by
    binaries.cockroachdb.com (anything else may be someone else's code: the result says how to
    run the check by hand instead).

    Every option is validated before anything is created or downloaded. ``replace`` lets an
    existing different archive file, or an earlier extraction of the same archive, be
    replaced. Raises as :func:`fetch_release_archive` and :func:`extract_archive` do; on
    failure, the files this call created in ``dest_dir`` are removed again.
    """
    known = resolve_release(release)
    wanted = list(dict.fromkeys(platforms))
    for platform in wanted:
        check_platform(known, platform)
    source = mirror if isinstance(mirror, Mirror) else resolve_mirror(mirror)
    require_directory(dest_dir)
    created: list[Path] = []
    files: list[FetchedBinary] = []
    try:
        for platform in wanted:
            name = archive_name(known.name, platform)
            if not (dest_dir / name).exists():
                created.append(dest_dir / name)
            archive = fetch_release_archive(
                known.name, platform, dest_dir, mirror=source, cache_dir=cache_dir,
                use_cache=use_cache, replace=replace, progress=progress, policy=policy,
            )
            if not extract:
                files.append(FetchedBinary(archive))
                continue
            folder = dest_dir / archive_stem(known.name, platform)
            fresh = not folder.exists() and not folder.is_symlink()
            extracted = extract_archive(archive.path, dest_dir, replace=replace,
                                        sha256=archive.sha256)
            if fresh:
                created.append(folder)
            files.append(FetchedBinary(archive, extracted, _version_check(archive, extracted)))
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


def _version_check(archive: FetchedArchive, extracted: ExtractedBinary) -> VersionCheck:
    """Run the extracted binary only when Cockroach Labs' own site vouched for its archive."""
    if archive.published is None:
        return version_not_run(
            extracted.cockroach,
            f"no published checksum exists for {archive.release}, so nothing vouches for this "
            "binary")
    if not archive.checksum_official:
        return version_not_run(
            extracted.cockroach,
            f"its checksum came from {archive.published.url}, not from {DEFAULT_MIRROR_URL} "
            "over HTTPS, so nothing vouches for this binary")
    return check_binary_version(extracted.cockroach, archive.release, platform=archive.platform)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

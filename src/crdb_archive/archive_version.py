"""Which release took a backup: read from its manifest or given by the user, and what to warn
about it (withdrawn, out of support, binaries leaving the download site)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from crdb_archive.backup import BackupInfo
from crdb_archive.errors import BadInput, EncryptedBackup, VersionConflict
from crdb_archive.versions import VersionSpec, release_index

# Warn when the binaries of the backup's major disappear from the download site within this.
BINARY_REMOVAL_WARNING_DAYS = 180


@dataclass(frozen=True)
class SettledVersion:
    """The release a bundle archives, and where that came from."""

    spec: VersionSpec
    release: str
    source: Literal["manifest", "user"]


def settle_version(backup: BackupInfo, given: str | None, *, force: bool) -> SettledVersion:
    """The release that took ``backup``: ``given`` (None or ``auto``: its manifest's).

    Raises BadInput for a major version given instead of a release or a manifest without a
    build tag, VersionConflict when ``given`` differs from the manifest's (unless ``force``),
    EncryptedBackup when the manifest cannot be read and no release is given.
    """
    if given is not None and given not in ("", "auto"):
        return _given_version(backup, given, force=force)
    recorded = backup.manifest.build_tag
    if not backup.manifest.readable:
        raise EncryptedBackup(
            f"the backup at {backup.location} is encrypted, so its version cannot be read "
            "without its key: give the key (--encryption-passphrase-file, "
            "$CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE or --kms), or the release that took it with "
            "--version (for example --version v23.1.11)"
        )
    if recorded is None:
        raise BadInput(
            f"the backup manifest {backup.manifest.file} records no build tag: give the "
            "release that took it with --version"
        )
    spec = release_index().parse(recorded)
    if spec.release_name is None:  # pragma: no cover - build tags always carry a patch
        raise BadInput(f"build tag {recorded} is not a release")
    return SettledVersion(spec, spec.release_name, "manifest")


def _given_version(backup: BackupInfo, given: str, *, force: bool) -> SettledVersion:
    spec = release_index().parse(given)
    if spec.release_name is None:
        raise BadInput(
            f"--version {given} names a major version; give the exact release that took "
            f"the backup, such as {spec.major}.0"
        )
    recorded = backup.manifest.build_tag
    if recorded is not None and recorded != spec.release_name and not force:
        raise VersionConflict(
            f"--version {spec.release_name} differs from {recorded} recorded in the "
            f"backup's manifest; pass --force-version to archive {spec.release_name} anyway"
        )
    return SettledVersion(spec, spec.release_name, "user")


def version_warnings(backup: BackupInfo, version: SettledVersion) -> list[str]:
    """The backup's own warnings, then the release's, then its binaries' removal."""
    warnings = list(backup.warnings)
    for warning in version.spec.warnings():
        if warning not in warnings:
            warnings.append(warning)
    removal = version.spec.major.binary_removal_date
    if removal is not None:
        days = (removal - dt.datetime.now(dt.UTC).date()).days
        if days < 0:
            warnings.append(
                f"official {version.spec.major} binaries were scheduled for removal from the "
                f"download site on {removal}; a mirror may be the only source left"
            )
        elif days <= BINARY_REMOVAL_WARNING_DAYS:
            warnings.append(
                f"official {version.spec.major} binaries leave the download site on {removal} "
                f"({days} days from now)"
            )
    return warnings

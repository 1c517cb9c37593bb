"""The restore policy as answers: whether a backup restores into a version, and how to bring
it there (restore, upgrade major by major, back up, restore)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from crdb_archive.errors import NotRestorable
from crdb_archive.versions.index import ReleaseIndex, release_index
from crdb_archive.versions.model import Major, VersionSpec


def _window_text(index: ReleaseIndex, major: Major) -> str:
    return ", ".join(m.name for m in index.restorable_into(major))



@dataclass(frozen=True)
class Compatibility:
    """The answer to "can a backup from this version be restored into that one?"."""

    backup: VersionSpec
    target: VersionSpec
    supported: bool
    restorable_into: list[Major]
    reason: str
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "backup_version": self.backup.release_name or self.backup.major.name,
            "backup_major": self.backup.major.name,
            "target_version": self.target.release_name or self.target.major.name,
            "target_major": self.target.major.name,
            "restorable_into": [m.name for m in self.restorable_into],
            "reason": self.reason,
            "warnings": self.warnings,
        }


def compatibility(backup_version: str, target_version: str) -> Compatibility:
    """Whether a backup taken on ``backup_version`` restores into ``target_version``.

    Raises InvalidVersion or UnknownVersion for versions it cannot place.
    """
    index = release_index()
    backup = index.parse(backup_version)
    target = index.parse(target_version)
    window = index.restorable_into(backup.major)
    names = _window_text(index, backup.major)
    warnings = backup.warnings() + [w for w in target.warnings() if w not in backup.warnings()]
    if index.restore_window_open(backup.major):
        warnings.append(
            f"the release index ends at {index.newest_major}: a later major may also restore "
            f"{backup.major} backups once it is released"
        )
    if target.major in window:
        if target.major == backup.major:
            reason = f"same major version {backup.major}"
        elif target.major.position == backup.major.position + 1:
            reason = f"{target.major} is the next major after {backup.major}"
        else:
            skipped = index.next_major(backup.major)
            reason = (
                f"{target.major} follows {backup.major} when skipping the innovation "
                f"release {skipped}"
            )
        reason += f"; {backup.major} backups restore into {names}"
        return Compatibility(backup, target, True, window, reason, warnings)
    if target.major.position < backup.major.position:
        reason = (
            f"{target.major} is older than {backup.major}: backups never restore into a "
            "lower version"
        )
    else:
        reason = (
            f"{backup.major} backups restore only into {names}; reach {target.major} by "
            "restoring into one of those and upgrading (see `crdb-archive plan`)"
        )
    return Compatibility(backup, target, False, window, reason, warnings)


@dataclass(frozen=True)
class RestorePlan:
    """How to bring a backup from its version into a cluster on a target version."""

    backup: VersionSpec
    target: VersionSpec
    majors: list[Major]
    steps: list[str]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_version": self.backup.release_name or self.backup.major.name,
            "backup_major": self.backup.major.name,
            "target_version": self.target.release_name or self.target.major.name,
            "target_major": self.target.major.name,
            "majors": [m.name for m in self.majors],
            "steps": self.steps,
            "warnings": self.warnings,
        }


def restore_plan(backup_version: str, target_version: str) -> RestorePlan:
    """The steps to restore a backup from ``backup_version`` into ``target_version``.

    Restore into a temporary cluster running the archived binary of the backup's version,
    upgrade it major by major as the upgrade rules allow, and once the target is within the
    restore window, back up and restore into the target. Raises NotRestorable when the target
    is older than the backup.
    """
    index = release_index()
    backup = index.parse(backup_version)
    target = index.parse(target_version)
    warnings = backup.warnings() + [w for w in target.warnings() if w not in backup.warnings()]
    binary = backup.release_name or f"{backup.major}.x"
    if target.major.position < backup.major.position:
        raise NotRestorable(
            f"no path from {backup.major} to {target.major}: backups never restore into "
            "a lower version"
        )
    if index.can_restore(backup.major, target.major):
        return RestorePlan(
            backup,
            target,
            [backup.major] if backup.major == target.major else [backup.major, target.major],
            [f"RESTORE the backup directly into the {target.major} cluster: {backup.major} "
             f"backups restore into {_window_text(index, backup.major)}."],
            warnings,
        )
    path = index.upgrade_path(backup.major, target.major)
    # Stop upgrading at the first major whose backups the target accepts.
    stop = next(i for i, m in enumerate(path) if index.can_restore(m, target.major))
    chain = path[: stop + 1]
    steps = [
        f"Start a temporary cluster with the archived binary cockroach {binary} (the version "
        f"that took the backup) and RESTORE the backup into it.",
    ]
    steps.extend(
        f"Upgrade the temporary cluster from {a} to {b} (binary of the latest {b} patch "
        f"release) and finalize the upgrade."
        for a, b in itertools.pairwise(chain)
    )
    last = chain[-1]
    steps.append(
        f"BACKUP the temporary {last} cluster and RESTORE that backup into the {target.major} "
        f"cluster ({last} backups restore into {_window_text(index, last)})."
    )
    return RestorePlan(backup, target, [*chain, target.major], steps, warnings)

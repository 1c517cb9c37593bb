"""CockroachDB versions: names, the embedded release index, and the restore and upgrade rules.

Facts encoded here (CockroachDB docs, "Restoring Backups Across Versions" and "Upgrade"):

* A backup taken on major N restores into N and N+1; when N+1 is an innovation release it
  also restores into N+2. Never into an older major.
* Upgrades go from a regular release to the next major, or to the next regular release
  (skipping one innovation release); from an innovation release only to the next regular one.
* The patch level does not matter for restore compatibility: v22.1.8 and v22.1.14 are both
  v22.1 clusters.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from crdb_archive.errors import InvalidVersion, NotRestorable, UnknownVersion

MajorType = Literal["regular", "innovation"]

# v23.1.11, 23.1.11, v23.2.0-rc.1, v20.1.0-alpha20191216, v23.1, 23.1, 23.1.x
_VERSION_RE = re.compile(
    r"""
    ^v?(?P<year>\d{1,4})\.(?P<minor>\d{1,3})
    (?:\.(?:(?P<x>x)|(?P<patch>\d{1,4})(?P<pre>-[0-9A-Za-z][0-9A-Za-z.\-]*)?))?$
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Major:
    """A major version such as v23.1, with its lifecycle dates."""

    name: str
    position: int
    type: MajorType
    upcoming: bool
    release_date: dt.date | None
    maintenance_support_end: dt.date | None
    assistance_support_end: dt.date | None
    lts_maintenance_support_end: dt.date | None
    lts_assistance_support_end: dt.date | None
    binary_removal_date: dt.date | None

    @property
    def is_innovation(self) -> bool:
        return self.type == "innovation"

    @property
    def support_end(self) -> dt.date | None:
        """The last day Cockroach Labs supports this major in any phase."""
        dates = [
            d
            for d in (
                self.maintenance_support_end,
                self.assistance_support_end,
                self.lts_maintenance_support_end,
                self.lts_assistance_support_end,
            )
            if d is not None
        ]
        return max(dates) if dates else None

    @property
    def short(self) -> str:
        """The name without its leading ``v``, as cluster versions are written (``23.1``)."""
        return self.name.removeprefix("v")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Release:
    """One published release such as v23.1.11."""

    name: str
    major: str
    date: dt.date
    type: str
    withdrawn: bool
    cloud_only: bool
    has_sha256sum: bool
    platforms: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class VersionSpec:
    """What a user typed, understood: a major, and the release when one was named.

    ``release`` is None when only a major was given, or when the release name is well formed
    but not in the index (then ``release_name`` holds it and ``known_release`` is False).
    """

    text: str
    major: Major
    release_name: str | None
    release: Release | None

    @property
    def is_release(self) -> bool:
        return self.release_name is not None

    @property
    def known_release(self) -> bool:
        return self.release is not None

    def warnings(self) -> list[str]:
        """Facts about the named release that a user must not miss."""
        out: list[str] = []
        if self.release_name is not None and self.release is None:
            out.append(
                f"{self.release_name} is not a release in the embedded index "
                f"(major {self.major} is known); treated as a {self.major} version"
            )
        if self.release is not None:
            if self.release.withdrawn:
                out.append(
                    f"{self.release.name} is a withdrawn release: Cockroach Labs withdrew it "
                    "because of a serious defect"
                )
            if self.release.cloud_only:
                out.append(
                    f"{self.release.name} is available only for CockroachDB Cloud clusters "
                    "(no self-hosted binary is published)"
                )
            if self.release.type == "Testing":
                out.append(f"{self.release.name} is a testing release, not a production one")
        if self.major.upcoming:
            out.append(f"{self.major} is an upcoming major version, not yet released")
        return out


class ReleaseIndex:
    """The embedded index of CockroachDB majors and releases (``releases.json``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != 1:
            raise ValueError("unsupported release index format")
        self.majors: tuple[Major, ...] = tuple(
            Major(
                name=m["name"],
                position=i,
                type=m["type"],
                upcoming=m["upcoming"],
                release_date=_date(m["release_date"]),
                maintenance_support_end=_date(m["maintenance_support_end"]),
                assistance_support_end=_date(m["assistance_support_end"]),
                lts_maintenance_support_end=_date(m["lts_maintenance_support_end"]),
                lts_assistance_support_end=_date(m["lts_assistance_support_end"]),
                binary_removal_date=_date(m["binary_removal_date"]),
            )
            for i, m in enumerate(data["majors"])
        )
        self._majors = {m.name: m for m in self.majors}
        self.releases: tuple[Release, ...] = tuple(
            Release(
                name=r["name"],
                major=r["major"],
                date=dt.date.fromisoformat(r["date"]),
                type=r["type"],
                withdrawn=r["withdrawn"],
                cloud_only=r["cloud_only"],
                has_sha256sum=r["sha256sum"],
                platforms=tuple(r["platforms"]),
            )
            for r in data["releases"]
        )
        self._releases = {r.name: r for r in self.releases}

    # --- lookup -----------------------------------------------------------------------------

    @property
    def newest_major(self) -> Major:
        return self.majors[-1]

    def major(self, name: str) -> Major:
        """The major named ``name`` (``v23.1``); raises UnknownVersion."""
        try:
            return self._majors[name]
        except KeyError:
            raise UnknownVersion(self._unknown_message(name)) from None

    def release(self, name: str) -> Release:
        """The release named exactly ``name`` (``v23.1.11``); raises UnknownVersion."""
        try:
            return self._releases[name]
        except KeyError:
            raise UnknownVersion(
                f"{name} is not a CockroachDB release in the embedded release index (newest "
                f"known: {self.newest_major}); if it is newer, upgrade crdb-archive"
            ) from None

    def releases_of(self, major: Major | str) -> list[Release]:
        """The releases of one major, oldest first."""
        name = major.name if isinstance(major, Major) else self.parse(major).major.name
        return [r for r in self.releases if r.major == name]

    def _unknown_message(self, name: str) -> str:
        return (
            f"{name} is not a major version in the embedded release index (newest known: "
            f"{self.newest_major}); if it is newer, upgrade crdb-archive"
        )

    # --- parsing ----------------------------------------------------------------------------

    def parse(self, text: str) -> VersionSpec:
        """Understand a release (``v23.1.11``) or a major (``v23.1``, ``23.1.x``).

        Raises InvalidVersion for text that is not a version and UnknownVersion for a
        well-formed version whose major the index does not know.
        """
        raw = text.strip()
        if not raw:
            raise InvalidVersion("empty version: expected a release like v23.1.11 or a major "
                                 "like v23.1")
        # Old names (beta-20160407, v2.2.0-alpha.20181217 of v19.1) are looked up, not parsed:
        # their major cannot be derived from the name.
        for candidate in (raw, f"v{raw}"):
            release = self._releases.get(candidate)
            if release is not None:
                return VersionSpec(raw, self._majors[release.major], release.name, release)
        match = _VERSION_RE.match(raw)
        if match is None:
            raise InvalidVersion(
                f"{text!r} is not a CockroachDB version: expected a release like v23.1.11 "
                "or v23.2.0-rc.1, or a major like v23.1 or 23.1.x"
            )
        major_name = f"v{int(match['year'])}.{int(match['minor'])}"
        if match["patch"] is not None:
            release_name = f"{major_name}.{int(match['patch'])}{match['pre'] or ''}"
            try:
                Version(release_name)
            except _PackagingInvalidVersion:
                raise InvalidVersion(
                    f"{text!r} is not a CockroachDB version: cannot read the pre-release "
                    f"part {match['pre']!r}"
                ) from None
            major = self.major(major_name)
            release = self._releases.get(release_name)
            return VersionSpec(raw, major, release_name, release)
        return VersionSpec(raw, self.major(major_name), None, None)

    # --- ordering and the restore policy ----------------------------------------------------

    def _offset(self, major: Major, steps: int) -> Major | None:
        position = major.position + steps
        return self.majors[position] if 0 <= position < len(self.majors) else None

    def next_major(self, major: Major) -> Major | None:
        return self._offset(major, 1)

    def restorable_into(self, major: Major) -> list[Major]:
        """The majors a backup taken on ``major`` restores into.

        N and N+1, or N+2 too when N+1 is an innovation release
        (restoring-backups-across-versions).
        """
        out = [major]
        following = self.next_major(major)
        if following is not None:
            out.append(following)
            if following.is_innovation:
                after = self.next_major(following)
                if after is not None:
                    out.append(after)
        return out

    def restore_window_open(self, major: Major) -> bool:
        """True when the index may not yet know every major that ``major`` restores into."""
        following = self.next_major(major)
        if following is None:
            return True
        return following.is_innovation and self.next_major(following) is None

    def can_restore(self, backup: Major, cluster: Major) -> bool:
        """Whether a backup taken on ``backup`` is supported on a cluster on ``cluster``."""
        return cluster in self.restorable_into(backup)

    def upgrades_from(self, major: Major) -> list[Major]:
        """The majors a cluster on ``major`` may upgrade to in one step.

        From a regular release: the next major, or the next regular one when the next major is
        an innovation release. From an innovation release: only the next regular one.
        """
        following = self.next_major(major)
        if following is None:
            return []
        if not following.is_innovation:
            return [following]
        regular = self.next_major(following)
        if major.is_innovation:
            return [regular] if regular is not None else []
        return [following] + ([regular] if regular is not None else [])

    def upgrade_path(self, start: Major, target: Major) -> list[Major]:
        """The shortest chain of allowed upgrades from ``start`` to ``target``, both included.

        Raises NotRestorable when ``target`` is older than ``start``: there is no downgrade.
        """
        if target.position < start.position:
            raise NotRestorable(
                f"{target} is older than {start}: CockroachDB never upgrades or restores "
                "into an older version"
            )
        previous: dict[str, Major | None] = {start.name: None}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            if current == target:
                break
            for nxt in self.upgrades_from(current):
                if nxt.position <= target.position and nxt.name not in previous:
                    previous[nxt.name] = current
                    queue.append(nxt)
        if target.name not in previous:  # pragma: no cover - every forward chain connects
            raise NotRestorable(f"no upgrade path from {start} to {target}")
        path: list[Major] = []
        node: Major | None = target
        while node is not None:
            path.append(node)
            node = previous[node.name]
        return path[::-1]


def _window_text(index: ReleaseIndex, major: Major) -> str:
    return ", ".join(m.name for m in index.restorable_into(major))


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@functools.cache
def release_index() -> ReleaseIndex:
    """The release index embedded in the package."""
    text = resources.files("crdb_archive").joinpath("releases.json").read_text("utf-8")
    return ReleaseIndex(json.loads(text))


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
            "backup_major": self.backup.major.name,
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


def releases_listing(index: ReleaseIndex, major: str | None = None,
                     today: dt.date | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"releases": [...]}``: every major version (with the days left before its binaries
    are removed, counted from ``today``), or the releases of one ``major``.

    Raises InvalidVersion/UnknownVersion (exit 2) for a ``major`` the index does not know.
    """
    if major is not None:
        return {"releases": [
            {
                "release": r.name,
                "major": r.major,
                "date": r.date.isoformat(),
                "type": r.type,
                "withdrawn": r.withdrawn,
                "cloud_only": r.cloud_only,
                "sha256sum_published": r.has_sha256sum,
                "platforms": list(r.platforms),
            }
            for r in index.releases_of(index.parse(major).major)
        ]}
    day = today if today is not None else dt.datetime.now(dt.UTC).date()
    return {"releases": [
        {
            "major": m.name,
            "type": m.type,
            "upcoming": m.upcoming,
            "release_date": _iso(m.release_date),
            "support_end": _iso(m.support_end),
            "binary_removal_date": _iso(m.binary_removal_date),
            "days_until_binary_removal": ((m.binary_removal_date - day).days
                                          if m.binary_removal_date else None),
        }
        for m in index.majors
    ]}


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None

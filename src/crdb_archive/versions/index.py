"""The embedded index of CockroachDB majors and releases (``releases.json``): lookup, parsing
of version names, and the order of majors that the restore and upgrade rules follow.

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
import json
import re
from collections import deque
from importlib import resources
from typing import Any

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from crdb_archive.errors import InvalidVersion, NotRestorable, UnknownVersion
from crdb_archive.versions.model import Major, Release, VersionSpec

# v23.1.11, 23.1.11, v23.2.0-rc.1, v20.1.0-alpha20191216, v23.1, 23.1, 23.1.x
_VERSION_RE = re.compile(
    r"""
    ^v?(?P<year>\d{1,4})\.(?P<minor>\d{1,3})
    (?:\.(?:(?P<x>x)|(?P<patch>\d{1,4})(?P<pre>-[0-9A-Za-z][0-9A-Za-z.\-]*)?))?$
    """,
    re.VERBOSE,
)


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


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@functools.cache
def release_index() -> ReleaseIndex:
    """The release index embedded in the package."""
    text = resources.files("crdb_archive").joinpath("releases.json").read_text("utf-8")
    return ReleaseIndex(json.loads(text))


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

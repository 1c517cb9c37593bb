"""CockroachDB versions as values: a major with its lifecycle, a release, and what a user
typed, understood."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

MajorType = Literal["regular", "innovation"]


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

"""The [version] and [binaries] sections of a job spec: which release, which platforms, from
where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crdb_archive.binaries import PLATFORMS, resolve_mirror
from crdb_archive.errors import CrdbArchiveError
from crdb_archive.jobs.spec_table import SpecTable, kind_of
from crdb_archive.versions import release_index


def read_release(table: SpecTable) -> str | None:
    text = table.string("release", default="auto")
    if text is None or text == "auto":
        return None
    try:
        spec = release_index().parse(text)
    except CrdbArchiveError as error:
        table.problem("release", str(error))
        return None
    if spec.release_name is None:
        table.problem("release", f"{text} is a major version; name the exact release that "
                      f"took the backups, such as {spec.major}.0, or auto")
        return None
    return spec.release_name


def read_platforms(table: SpecTable, release: str | None) -> tuple[str, ...]:
    value: list[Any] | None = table.typed("platforms", (list,), "a list of platform names")
    if value is None:
        return ("linux-amd64",)
    if not value:
        table.problem("platforms", "must name at least one platform")
    known = release_index().parse(release).release if release else None
    published = known.platforms if known is not None else None
    chosen: list[str] = []
    for i, item in enumerate(value):
        where = f"platforms[{i}]"
        if not isinstance(item, str):
            table.problem(where, f"expected a platform name, got {kind_of(item)}")
        elif item not in PLATFORMS:
            table.problem(where, f"unknown platform {item!r}; expected one of "
                          f"{', '.join(PLATFORMS)}")
        elif item in chosen:
            table.problem(where, f"{item} is listed twice")
        elif published is not None and item not in published:
            table.problem(where, f"{release} was never published for {item}")
        else:
            chosen.append(item)
    return tuple(chosen)


def read_mirror(table: SpecTable, base: Path) -> str | None:
    text = table.string("mirror", expand=True)
    if text is None:
        return None
    if "://" not in text:
        text = str(base / text)
    try:
        resolve_mirror(text)
    except CrdbArchiveError as error:
        table.problem("mirror", str(error))
        return None
    return text

#!/usr/bin/env python3
"""Regenerate src/crdb_archive/releases.json from the CockroachDB docs' release data.

Inputs are the docs repository's ``src/current/_data/releases.yml`` and ``versions.csv``, given
as local paths or http(s) URLs:

    python scripts/update-release-index.py --releases PATH_OR_URL --versions PATH_OR_URL

The output is deterministic (sorted keys, one release per line), so a regenerated index shows
as a readable diff. Never edit releases.json by hand: fix the inputs or this script.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "crdb_archive" / "releases.json"
FORMAT = 1

# versions.csv writes "N/A" for a date that does not apply.
_NA = "N/A"

# The first major of the regular/innovation cadence. Before it every major was regular.
_FIRST_INNOVATION = (24, 2)


def read_source(location: str) -> bytes:
    """Read a local path or an http(s) URL."""
    if location.startswith(("http://", "https://")):
        with urllib.request.urlopen(location, timeout=60) as response:
            data: bytes = response.read()
            return data
    return Path(location).read_bytes()


def _date(value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return None if value in ("", _NA) else value


def _major_key(name: str) -> tuple[int, int]:
    year, minor = name.removeprefix("v").split(".")
    return int(year), int(minor)


def build_majors(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One entry per major version, ordered by release date (upcoming majors last).

    The order comes from release dates, not from ``previous_version``: the data records v20.1's
    previous version as v19.1, yet v19.2 was released between them.
    """
    released = [r for r in rows if _date(r["release_date"])]
    upcoming = [r for r in rows if not _date(r["release_date"])]
    released.sort(key=lambda r: (r["release_date"], _major_key(r["major_version"])))
    upcoming.sort(key=lambda r: _major_key(r["major_version"]))
    majors: list[dict[str, Any]] = []
    for row in released + upcoming:
        name = row["major_version"]
        is_upcoming = not _date(row["release_date"])
        if is_upcoming:
            kind = _cadence_type(majors, name)
        else:
            # A released major with no assistance-support phase is an innovation release.
            kind = "innovation" if row["asst_supp_exp_date"].strip() == _NA else "regular"
        majors.append(
            {
                "name": name,
                "type": kind,
                "upcoming": is_upcoming,
                "release_date": _date(row["release_date"]),
                "maintenance_support_end": _date(row["maint_supp_exp_date"]),
                "assistance_support_end": _date(row["asst_supp_exp_date"]),
                "lts_release_date": _date(row["initial_lts_release_date"]),
                "lts_maintenance_support_end": _date(row["lts_maint_supp_exp_date"]),
                "lts_assistance_support_end": _date(row["lts_asst_supp_exp_date"]),
                "binary_removal_date": _date(row["binary_removal_date"]),
            }
        )
    return majors


def _cadence_type(previous: list[dict[str, Any]], name: str) -> str:
    """The type of a major not yet released, from the cadence: since v24.2 they alternate."""
    if _major_key(name) < _FIRST_INNOVATION or not previous:
        return "regular"
    return "regular" if previous[-1]["type"] == "innovation" else "innovation"


def platforms_of(release: dict[str, Any]) -> list[str]:
    """The platforms a release shipped binaries for, from the docs' flags."""
    linux = release.get("linux") or {}
    mac = release.get("mac") or {}
    platforms = ["linux-amd64"]
    if linux.get("linux_arm"):
        platforms.append("linux-arm64")
    if linux.get("linux_intel_fips"):
        platforms.append("linux-amd64-fips")
    platforms.append("darwin-amd64")
    if mac.get("mac_arm"):
        platforms.append("darwin-arm64")
    if release.get("windows"):
        platforms.append("windows-amd64")
    return platforms


def build_releases(entries: list[dict[str, Any]], majors: set[str]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = entry["release_name"]
        # The docs' data has listed a release twice, verbatim; a conflicting repeat is an error.
        if name in by_name:
            if by_name[name] != entry:
                raise SystemExit(f"releases.yml lists {name} twice with different facts")
            continue
        by_name[name] = entry
    releases = []
    for entry in by_name.values():
        major = entry["major_version"]
        if major not in majors:
            raise SystemExit(f"release {entry['release_name']} names unknown major {major}")
        releases.append(
            {
                "name": entry["release_name"],
                "major": major,
                "date": str(entry["release_date"]),
                "type": entry["release_type"],
                "withdrawn": bool(entry.get("withdrawn", False)),
                "cloud_only": bool(entry.get("cloud_only", False)),
                "sha256sum": bool(entry.get("has_sha256sum", False)),
                "platforms": platforms_of(entry),
            }
        )
    releases.sort(key=lambda r: (r["date"], r["name"]))
    return releases


def render(index: dict[str, Any]) -> str:
    """JSON with one major or release per line: compact, and diffable."""
    lines = ["{"]
    scalars = {k: v for k, v in index.items() if k not in ("majors", "releases")}
    for key, value in sorted(scalars.items()):
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
    for key in ("majors", "releases"):
        lines.append(f"  {json.dumps(key)}: [")
        items = [json.dumps(item, sort_keys=True) for item in index[key]]
        lines.extend(f"    {item}," for item in items[:-1])
        lines.append(f"    {items[-1]}")
        lines.append("  ]," if key == "majors" else "  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", required=True, help="releases.yml: path or URL")
    parser.add_argument("--versions", required=True, help="versions.csv: path or URL")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the output would change")
    args = parser.parse_args(argv)

    releases_raw = read_source(args.releases)
    versions_raw = read_source(args.versions)
    rows = list(csv.DictReader(io.StringIO(versions_raw.decode("utf-8"))))
    entries = yaml.safe_load(releases_raw)
    majors = build_majors(rows)
    releases = build_releases(entries, {m["name"] for m in majors})
    index: dict[str, Any] = {
        "format": FORMAT,
        "source_sha256": {
            "releases.yml": hashlib.sha256(releases_raw).hexdigest(),
            "versions.csv": hashlib.sha256(versions_raw).hexdigest(),
        },
        "majors": majors,
        "releases": releases,
    }
    text = render(index)
    json.loads(text)  # the hand-rolled layout must still be JSON
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {len(majors)} majors, {len(releases)} releases")
    return 0


if __name__ == "__main__":
    sys.exit(main())

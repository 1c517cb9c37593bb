"""scripts/update-release-index.py on small inputs, and the embedded index against it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "update-release-index.py"

VERSIONS_CSV = """\
major_version,release_date,maint_supp_exp_date,asst_supp_exp_date,last_ga_patch,initial_lts_patch,initial_lts_release_date,lts_maint_supp_exp_date,lts_asst_supp_exp_date,previous_version,crdb_branch_name,binary_removal_date
v24.1,2024-05-20,2025-05-20,2025-11-20,24.1.5,24.1.6,2024-10-21,2025-10-21,2026-10-21,v23.2,release-24.1,2028-05-20
v24.2,2024-08-12,2025-02-12,N/A,N/A,N/A,N/A,N/A,N/A,v24.1,release-24.2,2028-08-12
v24.3,2024-11-18,2025-11-18,2026-05-18,24.3.11,24.3.12,2025-05-05,2026-05-05,2027-05-05,v24.2,release-24.3,2028-11-18
v25.1,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,v24.3,release-25.1,N/A
"""

RELEASE = """\
- release_name: {name}
  major_version: {major}
  release_date: '{date}'
  release_type: Production
  has_sha256sum: true
  mac:
    mac_arm: true
  windows: true
  linux:
    linux_arm: true
    linux_intel_fips: false
"""


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_release_index", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_inputs(tmp_path: Path, releases: str) -> tuple[Path, Path]:
    yml = tmp_path / "releases.yml"
    csv = tmp_path / "versions.csv"
    yml.write_text(releases)
    csv.write_text(VERSIONS_CSV)
    return yml, csv


def test_generates_index(tmp_path: Path) -> None:
    script = load_script()
    releases = (RELEASE.format(name="v24.1.0", major="v24.1", date="2024-05-20")
                + RELEASE.format(name="v24.2.0", major="v24.2", date="2024-08-12")
                + RELEASE.format(name="v24.2.0", major="v24.2", date="2024-08-12"))
    yml, csv = write_inputs(tmp_path, releases)
    out = tmp_path / "releases.json"
    assert script.main(["--releases", str(yml), "--versions", str(csv), "--output", str(out)]) == 0
    index = json.loads(out.read_text())
    assert [m["name"] for m in index["majors"]] == ["v24.1", "v24.2", "v24.3", "v25.1"]
    types = {m["name"]: m["type"] for m in index["majors"]}
    assert types == {"v24.1": "regular", "v24.2": "innovation", "v24.3": "regular",
                     "v25.1": "innovation"}
    assert index["majors"][-1]["upcoming"] is True
    # The verbatim duplicate collapses into one release.
    assert [r["name"] for r in index["releases"]] == ["v24.1.0", "v24.2.0"]
    assert index["releases"][0]["platforms"] == [
        "linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64", "windows-amd64"]
    assert script.main(["--releases", str(yml), "--versions", str(csv), "--output", str(out),
                        "--check"]) == 0


def test_conflicting_duplicate_is_refused(tmp_path: Path) -> None:
    script = load_script()
    releases = (RELEASE.format(name="v24.1.0", major="v24.1", date="2024-05-20")
                + RELEASE.format(name="v24.1.0", major="v24.1", date="2024-05-21"))
    yml, csv = write_inputs(tmp_path, releases)
    with pytest.raises(SystemExit, match="twice with different facts"):
        script.main(["--releases", str(yml), "--versions", str(csv),
                     "--output", str(tmp_path / "out.json")])


def test_embedded_index_is_consistent() -> None:
    index = json.loads((ROOT / "src" / "crdb_archive" / "releases.json").read_text())
    majors = {m["name"] for m in index["majors"]}
    assert all(r["major"] in majors for r in index["releases"])
    assert index["format"] == 1
    assert len(index["releases"]) > 500

"""The standard-tool recipes of bundle-format.md §5, run as written on real bundles.

Each rule's lines must pass on a sound bundle and fail on the damage the rule is about, so
that an auditor with coreutils, b3sum and jq alone gets the verdict crdb-archive gives.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support.bundles import make_bundle, retag, xor_byte

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "archive-specs" / "bundle-format.md"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("b3sum", "jq", "bash")),
    reason="the recipes use b3sum and jq (CI installs both)")


def recipes() -> dict[int, str]:
    """The recipe lines of each rule, from the one shell block of §5."""
    section = SPEC.read_text().split("## 5. Verification", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    rules: dict[int, list[str]] = {}
    current = 0
    for line in block.splitlines():
        heading = re.match(r"# (\d)\. ", line)
        if heading:
            current = int(heading.group(1))
            rules[current] = []
        elif line.strip() and not line.startswith("#"):
            rules[current].append(line)
    return {rule: "\n".join(lines) for rule, lines in rules.items()}


def run(bundle: Path, rule: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", recipes()[rule]],
                          cwd=bundle, capture_output=True, text=True, check=False,
                          timeout=120)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("recipes"))


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / pristine.name
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def test_the_recipes_cover_rules_1_to_5_and_7() -> None:
    assert sorted(recipes()) == [1, 2, 3, 4, 5, 7]


def test_every_rule_holds_on_a_sound_bundle(bundle: Path) -> None:
    for rule in recipes():
        done = run(bundle, rule)
        assert done.returncode == 0, (rule, done.stdout, done.stderr)


def first_payload(bundle: Path) -> Path:
    return sorted((bundle / "data" / "backup").rglob("*.sst"))[0]


def set_oxum(bundle: Path, value: str) -> None:
    info = bundle / "bag-info.txt"
    info.write_text(re.sub(r"^Payload-Oxum: .*$", f"Payload-Oxum: {value}",
                           info.read_text(), flags=re.MULTILINE))
    retag(bundle)


Damage = Callable[[Path], object]

DAMAGE: dict[str, tuple[int, Damage]] = {
    "bagit.txt edited": (1, lambda b: (b / "bagit.txt").write_text("BagIt-Version: 0.97\n")),
    "tag file edited": (2, lambda b: (b / "RESTORE.md").write_text("nothing to see\n")),
    "unlisted payload file": (3, lambda b: (b / "data" / "backup" / "extra.sst").write_bytes(
        b"x")),
    "payload file deleted": (3, lambda b: first_payload(b).unlink()),
    "stray top-level file": (3, lambda b: (b / "notes.txt").write_text("hi\n")),
    "symlink in the payload": (3, lambda b: (b / "data" / "link").symlink_to("backup")),
    "payload byte flipped": (4, lambda b: xor_byte(first_payload(b), 0)),
    "payload file cut short": (4, lambda b: first_payload(b).write_bytes(
        first_payload(b).read_bytes()[:-1])),
    "Payload-Oxum off by one": (5, lambda b: set_oxum(b, "1.1")),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_each_rule_catches_its_damage(bundle: Path, case: str) -> None:
    rule, damage = DAMAGE[case]
    damage(bundle)
    assert run(bundle, rule).returncode != 0


def test_rule_5_counts_the_real_payload(bundle: Path) -> None:
    files = [p for p in (bundle / "data").rglob("*") if p.is_file()]
    set_oxum(bundle, f"{sum(p.stat().st_size for p in files)}.{len(files)}")
    assert run(bundle, 5).returncode == 0
    set_oxum(bundle, f"{sum(p.stat().st_size for p in files)}.{len(files) + 1}")
    assert run(bundle, 5).returncode != 0


def test_rule_7_catches_a_binary_that_is_not_the_published_one(bundle: Path) -> None:
    description = json.loads((bundle / "crdb-archive.json").read_text())
    binary = description["binaries"][0]
    binary["published_sha256"] = "0" * 64
    (bundle / "crdb-archive.json").write_text(json.dumps(description, indent=2) + "\n")
    retag(bundle)
    assert run(bundle, 2).returncode == 0
    assert run(bundle, 7).returncode != 0

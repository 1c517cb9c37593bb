"""The restore and upgrade policy, checked against the CockroachDB docs' own tables."""

from __future__ import annotations

import itertools

import pytest

from crdb_archive.errors import InvalidVersion, NotRestorable, UnknownVersion
from crdb_archive.versions import (
    Major,
    compatibility,
    release_index,
    restore_plan,
)

INDEX = release_index()

# restoring-backups-across-versions (v26.3 docs): backup major -> restorable into.
NEWEST_TABLE = {
    "23.2": ["23.2", "24.1"],
    "24.1": ["24.1", "24.2", "24.3"],
    "24.2": ["24.2", "24.3"],
    "24.3": ["24.3", "25.1", "25.2"],
}
# restoring-backups-across-versions (v22 docs); the same version is implied.
OLDER_TABLE = {
    "20.1": "20.2",
    "20.2": "21.1",
    "21.1": "21.2",
    "21.2": "22.1",
    "22.1": "22.2",
}

ORDER = [
    "v1.0", "v1.1", "v2.0", "v2.1", "v19.1", "v19.2", "v20.1", "v20.2", "v21.1", "v21.2",
    "v22.1", "v22.2", "v23.1", "v23.2", "v24.1", "v24.2", "v24.3", "v25.1", "v25.2", "v25.3",
    "v25.4", "v26.1", "v26.2", "v26.3",
]
INNOVATIONS = {"v24.2", "v25.1", "v25.3", "v26.1", "v26.3"}


def major(name: str) -> Major:
    return INDEX.major(name)


def test_majors_in_release_order_with_innovations() -> None:
    assert [m.name for m in INDEX.majors] == ORDER
    assert {m.name for m in INDEX.majors if m.is_innovation} == INNOVATIONS
    assert major("v26.3").upcoming
    assert not major("v26.2").upcoming


@pytest.mark.parametrize(("backup", "targets"), sorted(NEWEST_TABLE.items()))
def test_newest_docs_table(backup: str, targets: list[str]) -> None:
    assert [m.short for m in INDEX.restorable_into(major(f"v{backup}"))] == targets
    for target in targets:
        assert compatibility(f"{backup}.x", f"{target}.x").supported


@pytest.mark.parametrize(("backup", "target"), sorted(OLDER_TABLE.items()))
def test_older_docs_table(backup: str, target: str) -> None:
    assert compatibility(f"v{backup}.5", f"v{target}.0").supported
    assert compatibility(f"v{backup}.5", f"v{backup}.1").supported
    assert [m.short for m in INDEX.restorable_into(major(f"v{backup}"))] == [backup, target]


def _rule(backup: int, target: int) -> bool:
    """The policy restated on positions in ORDER: N, N+1, and N+2 across an innovation."""
    if target in (backup, backup + 1):
        return True
    return target == backup + 2 and ORDER[backup + 1] in INNOVATIONS


PAIRS_FROM_V19_1 = list(
    itertools.product(range(ORDER.index("v19.1"), ORDER.index("v26.2") + 1), repeat=2)
)


@pytest.mark.parametrize(("b", "t"), PAIRS_FROM_V19_1, ids=lambda i: ORDER[i])
def test_every_major_pair_follows_the_rule(b: int, t: int) -> None:
    answer = compatibility(ORDER[b], ORDER[t])
    assert answer.supported is _rule(b, t), answer.reason
    if t < b:
        assert "older" in answer.reason


def test_downgrade_refused_with_reason() -> None:
    answer = compatibility("v24.3.1", "v24.1.9")
    assert not answer.supported
    assert answer.to_json()["restorable_into"] == ["v24.3", "v25.1", "v25.2"]
    assert "lower version" in answer.reason


@pytest.mark.parametrize(
    ("start", "target", "path"),
    [
        ("v24.1", "v25.2", ["v24.1", "v24.3", "v25.2"]),
        ("v21.2", "v23.1", ["v21.2", "v22.1", "v22.2", "v23.1"]),
        ("v24.2", "v25.1", ["v24.2", "v24.3", "v25.1"]),
        ("v24.1", "v24.2", ["v24.1", "v24.2"]),
        ("v25.1", "v25.2", ["v25.1", "v25.2"]),
        ("v23.2", "v23.2", ["v23.2"]),
        ("v19.2", "v20.2", ["v19.2", "v20.1", "v20.2"]),
        ("v24.1", "v26.2", ["v24.1", "v24.3", "v25.2", "v25.4", "v26.2"]),
    ],
)
def test_upgrade_paths(start: str, target: str, path: list[str]) -> None:
    assert [m.name for m in INDEX.upgrade_path(major(start), major(target))] == path


def test_upgrade_rules_across_innovation_releases() -> None:
    # From a regular release: the next major or the next regular one.
    assert [m.name for m in INDEX.upgrades_from(major("v24.1"))] == ["v24.2", "v24.3"]
    # From an innovation release only to the next regular one: v24.2 -> v25.1 is not one step.
    assert [m.name for m in INDEX.upgrades_from(major("v24.2"))] == ["v24.3"]
    assert major("v25.1") not in INDEX.upgrades_from(major("v24.2"))
    # Before v24.2 every upgrade is to the next major.
    assert [m.name for m in INDEX.upgrades_from(major("v22.1"))] == ["v22.2"]


def test_upgrade_path_refuses_downgrade() -> None:
    with pytest.raises(NotRestorable):
        INDEX.upgrade_path(major("v23.1"), major("v22.2"))


def test_plan_chain_and_steps() -> None:
    plan = restore_plan("v21.2.3", "v23.1")
    assert [m.name for m in plan.majors] == ["v21.2", "v22.1", "v22.2", "v23.1"]
    assert "v21.2.3" in plan.steps[0]
    assert "RESTORE" in plan.steps[-1]
    assert len(plan.steps) == 4

    direct = restore_plan("v24.1.5", "v24.3.2")
    assert [m.name for m in direct.majors] == ["v24.1", "v24.3"]
    assert len(direct.steps) == 1

    across = restore_plan("v24.1", "v25.2")
    assert [m.name for m in across.majors] == ["v24.1", "v24.3", "v25.2"]


def test_plan_into_older_version_has_no_path() -> None:
    with pytest.raises(NotRestorable):
        restore_plan("v23.1.11", "v22.2")


@pytest.mark.parametrize(
    ("text", "release", "major_name"),
    [
        ("v23.1.11", "v23.1.11", "v23.1"),
        ("23.1.11", "v23.1.11", "v23.1"),
        ("v23.2.0-rc.1", "v23.2.0-rc.1", "v23.2"),
        ("v23.1", None, "v23.1"),
        ("23.1", None, "v23.1"),
        ("23.1.x", None, "v23.1"),
        (" v24.3.1 ", "v24.3.1", "v24.3"),
        # Old names whose major cannot be read from the name.
        ("beta-20160407", "beta-20160407", "v1.0"),
        ("v2.2.0-alpha.20181217", "v2.2.0-alpha.20181217", "v19.1"),
        ("v20.1.0-alpha20191216", "v20.1.0-alpha20191216", "v20.1"),
        ("v1.0-rc.1", "v1.0-rc.1", "v1.0"),
    ],
)
def test_accepted_forms(text: str, release: str | None, major_name: str) -> None:
    spec = INDEX.parse(text)
    assert spec.release_name == release
    assert spec.major.name == major_name
    if release is not None:
        assert spec.known_release


@pytest.mark.parametrize("text", ["", "v", "23", "latest", "v23.1.11.4", "v23.1.11-", "23.x",
                                  "v23.1.11 v23.1.12", "vv23.1", "23.1.1.x"])
def test_garbage_is_invalid(text: str) -> None:
    with pytest.raises(InvalidVersion):
        INDEX.parse(text)


def test_version_newer_than_index_is_an_explicit_error() -> None:
    expected = r"v99\.9 is not a major version .* \(newest known: v26\.3\)"
    with pytest.raises(UnknownVersion, match=expected) as error:
        INDEX.parse("v99.9.9")
    # An installed package has no scripts/: the way out for an operator is an upgrade.
    assert "upgrade crdb-archive" in str(error.value)
    assert "scripts/" not in str(error.value)
    with pytest.raises(UnknownVersion, match="upgrade crdb-archive"):
        INDEX.release("v26.3.99")


def test_unknown_patch_of_known_major_is_flagged() -> None:
    spec = INDEX.parse("v23.1.99")
    assert spec.major.name == "v23.1"
    assert not spec.known_release
    assert any("not a release in the embedded index" in w for w in spec.warnings())


@pytest.mark.parametrize(
    "name",
    ["v20.1.4", "v20.1.5", "v21.1.8", "v22.1.17", "v22.1.19", "v22.2.4", "v22.2.8", "v23.1.0",
     "v24.2.1"],
)
def test_withdrawn_releases_flagged(name: str) -> None:
    assert INDEX.release(name).withdrawn
    answer = compatibility(name, name)
    assert answer.supported
    assert any("withdrawn" in w for w in answer.warnings)


def test_cloud_only_releases_flagged() -> None:
    cloud = [r for r in INDEX.releases if r.cloud_only]
    assert cloud, "the index lists cloud-only releases"
    assert any("CockroachDB Cloud" in w for w in INDEX.parse(cloud[0].name).warnings())


def test_release_facts() -> None:
    release = INDEX.release("v23.1.11")
    assert release.has_sha256sum
    assert set(release.platforms) == {
        "linux-amd64", "linux-arm64", "linux-amd64-fips", "darwin-amd64", "darwin-arm64",
        "windows-amd64",
    }
    assert not INDEX.release("v20.2.0").has_sha256sum
    assert INDEX.release("v21.1.0").has_sha256sum
    assert "linux-arm64" not in INDEX.release("v22.1.0").platforms
    assert INDEX.major("v20.2").binary_removal_date is not None
    names = [r.name for r in INDEX.releases]
    assert len(names) == len(set(names))


def test_window_beyond_index_is_flagged() -> None:
    answer = compatibility("v26.2.0", "v26.3")
    assert answer.supported
    assert any("release index ends at v26.3" in w for w in answer.warnings)

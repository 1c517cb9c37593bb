"""Every command's ``--json`` output, run as a user runs it, against the JSON Schemas published
in archive-specs/json/: success and failure, every shape a command prints.

The schemas are closed (``additionalProperties: false``), and every check also adds a key the
schema does not name and expects a refusal: output that drifts from its contract fails here.
Jobs, PostgreSQL and object storage are in test_json_schemas_services.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from support.backups import ERAS, mixed_collection
from support.bundles import make_bundle, run_cli, xor_byte
from support.catalog import Destination, make_destination
from support.export_demo import SCHEMA_SQL, write_shop_changefeed
from support.json_contracts import (
    SCHEMAS,
    SHARED,
    check,
    check_error,
    check_output,
    commands_in_help,
    load,
    problems,
    registry,
    schema_names,
    validator,
)
from support.mirror import MirrorServer
from support.release_archives import publish
from support.ssh import allowed_file


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Destination:
    """Bundles of five eras (two tars, one signed) and an export bundle, made once."""
    return make_destination(tmp_path_factory.mktemp("json-contracts"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    return tmp_path / "cache"


def bundle_path(made: Destination, kind: str, form: str = "dir") -> Path:
    chosen = next(b for b in made.bundles if b.kind == kind and b.form == form)
    return made.root / chosen.key


# --- the schemas themselves ----------------------------------------------------------------


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    names = schema_names()
    assert {"common", "error", "run"} <= set(names)
    for name in names:
        document = load(name)
        jsonschema.Draft202012Validator.check_schema(document)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$id"].endswith(f"/{name}.schema.json")
    # Every reference resolves: each $ref names a definition that exists.
    for name in names:
        text = json.dumps(load(name))
        for target in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
            file, _, pointer = target.partition("#")
            document = load(file.removesuffix(".schema.json")) if file else load(name)
            node = document
            for step in pointer.strip("/").split("/"):
                node = node[step]
            assert isinstance(node, dict), (name, target)
    assert registry()  # every $id distinct and loadable


def test_every_command_has_a_schema(capsys: pytest.CaptureFixture[str]) -> None:
    shown = run_cli(capsys, "--help")
    assert shown.code == 0, shown.err
    commands = commands_in_help(shown.out)
    # The help lists at least the commands the README documents; a new one needs a schema.
    assert {"archive", "verify", "inspect", "run", "releases"} <= commands
    described = set(schema_names()) - set(SHARED)
    assert commands - described == set(), "commands without a JSON Schema"
    assert described - commands == set(), "schemas of commands that do not exist"


def test_the_index_names_every_schema() -> None:
    index = (SCHEMAS / "README.md").read_text()
    for name in schema_names():
        assert f"[`{name}.schema.json`]({name}.schema.json)" in index, name


def test_the_schemas_refuse_what_the_contract_forbids() -> None:
    # Timestamps are UTC with Z; sizes are integers; exit codes and states are fixed lists.
    assert problems("error", {"error": "x", "exit_code": 4})
    assert problems("error", {"error": "x"})
    entry = {"name": "b", "location": "/d/b", "reason": "cold"}
    report = {"destination": "/d", "ok": True, "exit_code": 0,
              "budget": {"max_bundles": None, "max_bytes": None}, "bundles": 1,
              "checked": [], "damaged": 0, "skipped": [entry], "unchecked": [],
              "remaining": 0, "bytes_read": 0, "never_verified": 0,
              "oldest_verification": "2024-12-15T00:00:00Z",
              "oldest_verification_age_seconds": 1.5, "stale_records": [], "seconds": 0.1}
    check("audit", report)
    assert problems("audit", {**report, "oldest_verification": "2024-12-15T00:00:00+01:00"})
    assert problems("audit", {**report, "oldest_verification": "2024-12-15 00:00:00Z"})
    assert problems("audit", {**report, "bytes_read": 1.5})
    assert problems("audit", {**report, "bytes_read": "12"})
    assert problems("audit", {**report, "exit_code": 7})


def test_inspect_allows_the_files_a_collection_archive_leaves_out(tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    assert era.kind == "collection"
    from crdb_archive.backup import inspect_backup  # noqa: PLC0415

    with inspect_backup(str(era.path)) as info:
        payload = info.to_json()
    check("inspect", payload)
    assert payload["left_out"] is None
    mixed = mixed_collection(tmp_path / "mixed")
    with inspect_backup(str(mixed.root), with_left_out=True) as info:
        found = info.to_json()
    check("inspect", found)
    assert isinstance(found["left_out"], list)
    assert found["left_out"]
    left_out = [{"path": "2024/12/15-000000.00/notes.txt", "reason": "not a backup file"}]
    check("inspect", {**payload, "left_out": left_out})
    assert problems("inspect", {**payload, "left_out": [{"path": "x"}]})
    assert problems("inspect", {**payload, "left_out": [{"path": "x", "reason": 1}]})
    assert problems("inspect", {**payload, "left_out": [
        {"path": "x", "reason": "y", "size": 1}]})


# --- compat, plan, releases ----------------------------------------------------------------


def test_compat(capsys: pytest.CaptureFixture[str]) -> None:
    yes = check_output(run_cli(capsys, "compat", "v23.1.11", "v23.2", "--json"), "compat")
    assert (yes["supported"], yes["backup_version"], yes["target_major"]) == (
        True, "v23.1.11", "v23.2")
    no = check_output(run_cli(capsys, "compat", "v23.1", "v22.2", "--json"), "compat", code=1)
    assert no["supported"] is False
    check_error(run_cli(capsys, "compat", "v23.1", "not-a-version", "--json"), 2)
    check_error(run_cli(capsys, "compat", "v23.1", "--json"), 2)  # usage: a missing argument


def test_plan(capsys: pytest.CaptureFixture[str]) -> None:
    steps = check_output(run_cli(capsys, "plan", "v21.1.21", "--target", "v23.2", "--json"),
                         "plan")
    assert (steps["backup_version"], steps["majors"][0], steps["majors"][-1]) == (
        "v21.1.21", "v21.1", "v23.2")
    check_error(run_cli(capsys, "plan", "v23.1", "--target", "v22.2", "--json"), 1)
    check_error(run_cli(capsys, "plan", "v23.1", "--json", "--no-such-option"), 2)


def test_releases(capsys: pytest.CaptureFixture[str]) -> None:
    majors = check_output(run_cli(capsys, "releases", "--json"), "releases")
    assert {"v20.2", "v23.1", "v24.3"} <= {m["major"] for m in majors["releases"]}
    of_one = check_output(run_cli(capsys, "releases", "v23.1", "--json"), "releases")
    assert "v23.1.11" in {r["release"] for r in of_one["releases"]}
    assert all(r["major"] == "v23.1" for r in of_one["releases"])
    check_error(run_cli(capsys, "releases", "v99.1", "--json"), 2)


# --- inspect ------------------------------------------------------------------------------


def test_inspect_backups_and_collections(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    for era_name in ("v20.1", "v22.2", "v23.1", "v24.3", "encrypted", "dev"):
        era = ERAS[era_name](tmp_path / era_name)
        found = check_output(run_cli(capsys, "inspect", str(era.path), "--json"), "inspect")
        assert (found["kind"], found["source"]) == (era.kind, str(era.path))
        assert found["build_tag"] == era.build_tag
    check_error(run_cli(capsys, "inspect", str(tmp_path / "nothing"), "--json"), 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_error(run_cli(capsys, "inspect", str(empty), "--json"), 2)


def test_inspect_changefeed_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_shop_changefeed(tmp_path / "sink")
    found = check_output(run_cli(capsys, "inspect", str(tmp_path / "sink"), "--json"),
                         "inspect")
    assert (found["kind"], found["format"], found["complete"]) == ("changefeed", "ndjson", True)


def test_inspect_bundles(capsys: pytest.CaptureFixture[str], made: Destination) -> None:
    for bundle in made.bundles:
        found = check_output(run_cli(capsys, "inspect", str(made.root / bundle.key), "--json"),
                             "inspect")
        assert (found["kind"], found["bundle_kind"], found["form"]) == (
            "bundle", bundle.kind, bundle.form)
        assert found["bundle"] == str(made.root / bundle.key)


def test_inspect_a_damaged_bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  made: Destination) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle_path(made, "backup"), copy)
    xor_byte(copy / "crdb-archive.json", 10)
    check_error(run_cli(capsys, "inspect", str(copy), "--json"), 1)


# --- binaries -----------------------------------------------------------------------------


def test_fetch_binary(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                      mirror: MirrorServer, cache: Path) -> None:
    publish(mirror.root, "v23.1.11", ["linux-amd64", "darwin-arm64"])
    fetched = check_output(run_cli(
        capsys, "fetch-binary", "v23.1.11", "--to", str(tmp_path / "bin"), "--mirror",
        mirror.url, "--platform", "linux-amd64", "--platform", "darwin-arm64", "--extract",
        "--json"), "fetch-binary")
    assert [f["platform"] for f in fetched["files"]] == ["linux-amd64", "darwin-arm64"]
    assert all("extracted" in f for f in fetched["files"])
    again = check_output(run_cli(
        capsys, "fetch-binary", "v23.1.11", "--to", str(tmp_path / "again"), "--mirror",
        mirror.url, "--json"), "fetch-binary")
    assert again["files"][0]["from_cache"] is True
    check_error(run_cli(capsys, "fetch-binary", "v23.1.11", "--to", str(tmp_path / "x"),
                        "--mirror", mirror.url, "--platform", "solaris-sparc", "--json"), 2)
    check_error(run_cli(capsys, "fetch-binary", "v23.1.12", "--to", str(tmp_path / "x"),
                        "--mirror", mirror.url, "--json"), 3)  # not on the mirror


def test_binary(capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination) -> None:
    bundle = bundle_path(made, "backup")
    got = check_output(run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "a"),
                               "--platform", "linux-amd64", "--json"), "binary")
    assert (got["bundle"], got["platform"]) == (str(bundle), "linux-amd64")
    assert made.key is not None
    signers = allowed_file(tmp_path, f"archiver@example.com {made.key.public_key}")
    signed = next(b for b in made.bundles if b.signed_by is not None)
    checked = check_output(run_cli(
        capsys, "binary", str(made.root / signed.key), "--to", str(tmp_path / "b"),
        "--platform", "linux-amd64", "--allowed-signers", str(signers), "--json"), "binary")
    assert checked["signature"]["valid"] is True
    check_error(run_cli(capsys, "binary", str(bundle_path(made, "export")), "--to",
                        str(tmp_path / "c"), "--json"), 2)
    check_error(run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "d"),
                        "--platform", "windows-amd64", "--json"), 1)


# --- archive, verify ----------------------------------------------------------------------


def test_archive_a_backup(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                          mirror: MirrorServer, cache: Path) -> None:
    era = ERAS["v24.3"](tmp_path / "backups")
    assert era.build_tag is not None
    publish(mirror.root, era.build_tag, ["linux-amd64"])
    args = ("archive", str(era.path), "--dest", str(tmp_path / "out"), "--mirror", mirror.url,
            "--with-incrementals", "--json")
    first = run_cli(capsys, *args)
    written = check_output(first, "archive")
    assert (written["kind"], written["created"], written["version"]) == (
        "backup", True, era.build_tag)
    # Progress went to stderr, a JSON line at a time, as stderr is no terminal here.
    progress = [json.loads(line) for line in first.err.splitlines() if line.startswith("{")]
    assert progress
    for line in progress:
        check("progress", line)
    assert any(line["finished"] for line in progress)
    again = check_output(run_cli(capsys, *args), "archive")
    assert again["created"] is False
    tar = check_output(run_cli(capsys, *args[:-1], "--format", "tar", "--json"), "archive")
    assert tar["bundle"].endswith(".tar")
    check_error(run_cli(capsys, "archive", str(tmp_path / "none"), "--dest",
                        str(tmp_path / "out"), "--json"), 2)
    check_error(run_cli(capsys, "archive", str(era.path), "--json"), 2)  # usage: no --dest


def test_archive_changefeed_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_shop_changefeed(tmp_path / "sink")
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    written = check_output(run_cli(capsys, "archive", str(tmp_path / "sink"), "--dest",
                                   str(tmp_path / "out"), "--schema", str(schema), "--json"),
                           "archive")
    assert (written["kind"], written["source_kind"]) == ("export", "changefeed")
    assert written["as_of"]["time"].endswith("Z")
    check_error(run_cli(capsys, "archive", str(tmp_path / "sink"), "--dest",
                        str(tmp_path / "out"), "--json"), 2)  # no --schema


def test_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination) -> None:
    every = [str(made.root / b.key) for b in made.bundles]
    for where in every:
        report = check_output(run_cli(capsys, "verify", where, "--json"), "verify")
        assert (report["bundle"], report["ok"]) == (where, True)
    fast = check_output(run_cli(capsys, "verify", every[0], "--fast", "--json"), "verify")
    assert fast["mode"] == "fast"
    many = check_output(run_cli(capsys, "verify", *every, "--all-digests", "--json"),
                        "verify")
    assert (many["ok"], many["checked"], len(many["bundles"])) == (True, len(every),
                                                                 len(every))
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle_path(made, "backup"), damaged)
    sst = next(p for p in sorted((damaged / "data").rglob("*.sst")))
    xor_byte(sst)
    bad = check_output(run_cli(capsys, "verify", str(damaged), "--json"), "verify", code=1)
    assert [p["kind"] for p in bad["problems"]] == ["digest"]
    mixed = check_output(run_cli(capsys, "verify", every[0], str(damaged),
                                 str(tmp_path / "nothing"), "--json"), "verify", code=1)
    assert [b["ok"] for b in mixed["bundles"]] == [True, False, False]
    assert mixed["bundles"][2]["checked"] is False
    check_error(run_cli(capsys, "verify", str(tmp_path / "nothing"), "--json"), 2)
    check_error(run_cli(capsys, "verify", "--json"), 2)  # usage: no bundle


# --- list, audit --------------------------------------------------------------------------


def test_list(capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination) -> None:
    listed = check_output(run_cli(capsys, "list", str(made.root), "--json"), "list")
    assert {b["key"] for b in listed["bundles"]} == {b.key for b in made.bundles}
    assert all(b["bytes"] == made.size(b["key"]) for b in listed["bundles"])
    routed = check_output(run_cli(capsys, "list", str(made.root), "--restorable-into",
                                  "v23.2", "--json"), "list")
    assert routed["restorable_into"] == "v23.2"
    assert all("restore" in b for b in routed["bundles"])
    empty = check_output(run_cli(capsys, "list", str(tmp_path / "none"), "--json"), "list")
    assert empty["bundles"] == []
    check_error(run_cli(capsys, "list", str(made.root), "--restorable-into", "v99.9",
                        "--json"), 2)


def test_audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination) -> None:
    dest = tmp_path / "dest"
    shutil.copytree(made.root, dest)
    first = check_output(run_cli(capsys, "audit", str(dest), "--max-bundles", "2", "--json"),
                         "audit")
    assert (len(first["checked"]), first["remaining"]) == (2, len(made.bundles) - 2)
    victim = made.bundles[-1]
    sst = next(p for p in sorted((dest / victim.key / "data").rglob("*")) if p.is_file())
    xor_byte(sst)
    rest = check_output(run_cli(capsys, "audit", str(dest), "--json"), "audit", code=1)
    assert rest["damaged"] == 1
    assert rest["oldest_verification"] is not None
    check_error(run_cli(capsys, "audit", str(dest), "--max-bytes", "lots", "--json"), 2)


def test_a_fresh_bundle_is_described_the_same_by_every_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "fresh", fmt="tar", era="v23.1")
    where = str(bundle)
    inspected = check_output(run_cli(capsys, "inspect", where, "--json"), "inspect")
    verified = check_output(run_cli(capsys, "verify", where, "--json"), "verify")
    listed = check_output(run_cli(capsys, "list", str(bundle.parent), "--json"), "list")
    (entry,) = listed["bundles"]
    assert inspected["bundle"] == verified["bundle"] == entry["location"] == where
    assert inspected["name"] == entry["name"] == bundle.name.removesuffix(".tar")
    assert inspected["form"] == entry["form"] == "tar"
    assert inspected["major_version"] == entry["major_version"] == "v23.1"
    assert inspected["version"] == entry["version"] == "v23.1.11"
    assert entry["bytes"] == bundle.stat().st_size
    assert validator("list").is_valid(listed)

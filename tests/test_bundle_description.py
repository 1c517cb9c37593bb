"""crdb-archive.json's typed model: what `archive` writes reads back into it and renders to the
same bytes, valid against the schema published in archive-specs/; bundles written before
`kind`, `backup.encryption` and the provenance fields existed still read; a description that
breaks the model is refused with one line naming the key."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from crdb_archive.archive import ArchiveRequest
from crdb_archive.bundle.description import (
    BackupDescription,
    ExportDescription,
    from_json,
)
from crdb_archive.bundle.model import render
from crdb_archive.bundle.summary import summarize_bundle
from crdb_archive.errors import DamagedBundle
from crdb_archive.export.archive import archive_export
from crdb_archive.export.options import ExportOptions
from support.bundles import make_bundle, retag, run_cli
from support.export_demo import SCHEMA_SQL, write_shop_changefeed

PUBLISHED_SCHEMA = Path(__file__).resolve().parents[1] / "archive-specs" / \
    "bundle-manifest.schema.json"

# What bundles lacked before each field was added (bundle-format.md 4.5): kind (export
# bundles), backup.encryption, and the binaries' provenance.
_BINARY_PROVENANCE = ("published_checksum_url", "from_cache", "published_checksum_from_cache",
                      "official")
_OTHER_PROVENANCE = ("published_checksum_url", "published_checksum_from_cache")


@functools.cache
def _published_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(PUBLISHED_SCHEMA.read_text("utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_published_schema_accepts(document: object) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _published_validator().iter_errors(document)]
    assert errors == []


@pytest.fixture(scope="module")
def backup_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory bundle of a real backup, written by `archive`."""
    return make_bundle(tmp_path_factory.mktemp("backup"))


@pytest.fixture(scope="module")
def tar_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("tar"), fmt="tar", era="v24.3")


@pytest.fixture(scope="module")
def export_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export bundle of a changefeed's output, written by `archive`."""
    base = tmp_path_factory.mktemp("export")
    write_shop_changefeed(base / "sink")
    schema = base / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    result = archive_export(ArchiveRequest(source=str(base / "sink"), dest=base / "bundles"),
                            ExportOptions(schema=schema))
    return Path(result.bundle)


def description_bytes(bundle: Path) -> bytes:
    return (bundle / "crdb-archive.json").read_bytes()


# --- round trips ---------------------------------------------------------------------------------


def test_a_backup_bundles_description_reads_into_the_model_and_renders_the_same_bytes(
        backup_bundle: Path) -> None:
    written = description_bytes(backup_bundle)
    document = json.loads(written)
    description = from_json(document)
    assert isinstance(description, BackupDescription)
    # The model holds what the file says, field by field.
    assert description.name == document["name"] == backup_bundle.name
    assert description.cockroachdb.version == document["cockroachdb"]["version"]
    assert description.backup.files == document["backup"]["files"]
    assert description.backup.encryption is not None
    assert description.backup.encryption.mode == document["backup"]["encryption"]["mode"]
    assert [b.sha256 for b in description.binaries] == [
        b["sha256"] for b in document["binaries"]]
    assert description.binaries[0].provenance
    assert description.kind_recorded
    assert render(description.to_json()) == written
    assert_published_schema_accepts(description.to_json())


def test_a_tar_bundles_description_round_trips_too(tar_bundle: Path, tmp_path: Path) -> None:
    import tarfile  # noqa: PLC0415

    with tarfile.open(tar_bundle) as tar:
        member = tar.extractfile(f"{tar_bundle.name.removesuffix('.tar')}/crdb-archive.json")
        assert member is not None
        written = member.read()
    description = from_json(json.loads(written))
    assert isinstance(description, BackupDescription)
    assert description.cockroachdb.version == "v24.3.1"
    assert render(description.to_json()) == written
    assert_published_schema_accepts(description.to_json())


def test_an_export_bundles_description_reads_into_the_model_and_renders_the_same_bytes(
        export_bundle: Path) -> None:
    written = description_bytes(export_bundle)
    document = json.loads(written)
    description = from_json(document)
    assert isinstance(description, ExportDescription)
    assert description.source_kind == document["export"]["source_kind"]
    assert description.as_of is not None
    assert description.as_of.decimal() == document["export"]["as_of"]["hlc"]
    assert {t.name: t.rows for t in description.tables} == {
        name: entry["rows"] for name, entry in document["export"]["tables"].items()}
    assert render(description.to_json()) == written
    assert_published_schema_accepts(description.to_json())


# --- bundles written before the later fields --------------------------------------------------


def as_older_writer(document: dict[str, Any]) -> dict[str, Any]:
    """The description as a writer before kind, encryption and provenance wrote it."""
    old = copy.deepcopy(document)
    del old["kind"]
    del old["backup"]["encryption"]
    for binary in old["binaries"]:
        for key in _BINARY_PROVENANCE:
            del binary[key]
    for other in old["other_platforms"]:
        for key in _OTHER_PROVENANCE:
            del other[key]
    return old


def test_an_older_writers_description_reads_and_renders_unchanged(
        backup_bundle: Path) -> None:
    old = as_older_writer(json.loads(description_bytes(backup_bundle)))
    assert_published_schema_accepts(old)
    description = from_json(old)
    assert isinstance(description, BackupDescription)
    assert not description.kind_recorded
    assert description.backup.encryption is None
    assert description.backup.encryption_mode == "none"
    assert not any(b.provenance or b.official for b in description.binaries)
    assert render(description.to_json()) == render(old)


def test_an_older_bundle_is_still_inspected_verified_and_read_by_the_cli(
        backup_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil  # noqa: PLC0415

    bundle = tmp_path / backup_bundle.name
    shutil.copytree(backup_bundle, bundle)
    old = as_older_writer(json.loads(description_bytes(bundle)))
    (bundle / "crdb-archive.json").write_bytes(render(old))
    retag(bundle)
    summary = summarize_bundle(bundle)
    assert summary["bundle_kind"] == "backup"
    assert summary["backup"]["encryption"] == "none"
    verified = run_cli(capsys, "verify", str(bundle), "--json")
    assert verified.code == 0, verified.out + verified.err
    listed = run_cli(capsys, "list", str(tmp_path), "--json")
    assert listed.code == 0, listed.out + listed.err
    assert backup_bundle.name in listed.out


# --- crafted descriptions ------------------------------------------------------------------------


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return edit


def _delete(path: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]
    return edit


BACKUP_DAMAGE: list[tuple[str, Edit, str]] = [
    ("files as text", _set("backup.files", "3"),
     "crdb-archive.json: backup.files: expected an integer, found a string"),
    ("size as a boolean", _set("binaries.0.size", True),
     "crdb-archive.json: binaries[0].size: expected an integer, found a boolean"),
    ("negative bytes", _set("backup.bytes", -1),
     "crdb-archive.json: backup.bytes: expected a count, found -1"),
    ("no release", _delete("cockroachdb"), "crdb-archive.json: cockroachdb: missing"),
    ("a binary outside data/cockroach", _set("binaries.0.file", "data/cockroach/../backup/x"),
     "crdb-archive.json: binaries[0].file: expected a file directly under data/cockroach/, "
     "found 'data/cockroach/../backup/x'"),
    ("a digest that is not hex", _set("binaries.0.sha256", "Z" * 64),
     "crdb-archive.json: binaries[0].sha256: expected 64 hex digits, found '" + "Z" * 64 + "'"),
    ("no format version", _delete("format_version"),
     "crdb-archive.json: format_version: missing"),
    ("an unknown key", _set("surprise", 1),
     "crdb-archive.json: surprise: not a key of the format"),
    ("an unknown nested key", _set("backup.encryption.passphrase", "x"),
     "crdb-archive.json: backup.encryption.passphrase: not a key of the format"),
    ("a later format", _set("format_version", 2),
     "crdb-archive.json: format_version: 2 is not a format version this crdb-archive reads"),
    ("another format", _set("format", "bagit"),
     "crdb-archive.json: format: expected crdb-archive-bundle, found 'bagit'"),
    ("an unknown kind", _set("kind", "snapshot"),
     "crdb-archive.json: kind: expected one of backup, export, found 'snapshot'"),
    ("an unknown encryption", _set("backup.encryption.mode", "rot13"),
     "crdb-archive.json: backup.encryption.mode: expected one of none, passphrase, kms, "
     "unknown, found 'rot13'"),
    ("warnings not text", _set("warnings", [1]),
     "crdb-archive.json: warnings[0]: expected a string, found an integer"),
    ("payload elsewhere", _set("backup.payload_dir", "data/other"),
     "crdb-archive.json: backup.payload_dir: expected data/backup"),
    ("binaries not a list", _set("binaries", {}),
     "crdb-archive.json: binaries: expected an array, found an object"),
]


def assert_refused_in_one_line(bundle: Path, edit: Edit, message: str) -> None:
    """The bundle's description, edited, is refused by the model in one line that starts
    with ``message``."""
    document = json.loads(description_bytes(bundle))
    edit(document)
    with pytest.raises(DamagedBundle) as refused:
        from_json(document)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in BACKUP_DAMAGE],
                         ids=[name for name, _, _ in BACKUP_DAMAGE])
def test_a_crafted_backup_description_is_refused_in_one_line_naming_the_key(
        backup_bundle: Path, edit: Edit, message: str) -> None:
    assert_refused_in_one_line(backup_bundle, edit, message)


def test_a_description_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(DamagedBundle, match=r"^crdb-archive.json: \(top level\): expected an "
                                            r"object, found an array$"):
        from_json([])


EXPORT_DAMAGE: list[tuple[str, Edit, str]] = [
    ("a time that is not the HLC's", _set("export.as_of.time", "2000-01-01T00:00:00.000000000Z"),
     "crdb-archive.json: export.as_of.time: 2000-01-01T00:00:00.000000000Z is not the time of "
     "export.as_of.hlc"),
    ("a short HLC", _set("export.as_of.hlc", "1.5"),
     "crdb-archive.json: export.as_of.hlc: not an HLC timestamp"),
    ("rows as text", lambda d: d["export"]["tables"]["public.orders"].update(rows="7"),
     "crdb-archive.json: export.tables.public.orders.rows: expected an integer, found a "
     "string"),
    ("an unknown format", _set("export.format", "xml"),
     "crdb-archive.json: export.format: expected one of ndjson, csv, parquet, found 'xml'"),
    ("backup keys in an export", _set("cockroachdb", {}),
     "crdb-archive.json: cockroachdb: not a key of the format"),
]


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in EXPORT_DAMAGE],
                         ids=[name for name, _, _ in EXPORT_DAMAGE])
def test_a_crafted_export_description_is_refused_in_one_line_naming_the_key(
        export_bundle: Path, edit: Edit, message: str) -> None:
    assert_refused_in_one_line(export_bundle, edit, message)


def test_a_bundle_the_schema_accepts_but_the_model_refuses_is_damage_in_one_line(
        export_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil  # noqa: PLC0415

    bundle = tmp_path / export_bundle.name
    shutil.copytree(export_bundle, bundle)
    document = json.loads(description_bytes(bundle))
    document["export"]["as_of"]["time"] = "2000-01-01T00:00:00.000000000Z"
    (bundle / "crdb-archive.json").write_bytes(render(document))
    retag(bundle)
    assert_published_schema_accepts(document)
    inspected = run_cli(capsys, "inspect", str(bundle))
    assert inspected.code == 1
    lines = inspected.err.strip().splitlines()
    assert len(lines) == 1, inspected.err
    assert "export.as_of.time" in lines[0]
    assert "Traceback" not in inspected.err

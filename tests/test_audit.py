"""`crdb-archive audit` on every storage backend: budgeted runs walk the whole archive, every
bundle once before any twice; each check is a new record and no record is ever rewritten; a
damaged bundle is found, named and counted; the metrics read back with prometheus_client's
parser; cold bundles are passed by; a stop leaves no half record."""

from __future__ import annotations

import io
import json
import math
import signal
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crdb_archive.bundle.publish import write_bundle
from crdb_archive.bundle.writer import PayloadItem, PayloadResult
from crdb_archive.storage import Storage, open_storage
from crdb_archive.storage.base import PARTIAL_PREFIX
from support.bundles import run_cli
from support.catalog import Destination, copy_into, make_destination
from support.cli import signal_during_task
from support.s3 import MotoS3
from support.ssh import allowed_file
from support.storage_backends import Backend

FIXITY = ".crdb-archive/fixity/"
RECORD_SCHEMA = Path(__file__).resolve().parents[1] / "archive-specs" / \
    "fixity-record.schema.json"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Destination:
    return make_destination(tmp_path_factory.mktemp("audit"))


def audit(capsys: pytest.CaptureFixture[str], uri: str, *extra: str,
          code: int = 0) -> dict[str, Any]:
    result = run_cli(capsys, "audit", uri, "--json", *extra)
    assert result.code == code, result.out + result.err
    payload: dict[str, Any] = json.loads(result.out)
    return payload


def records(storage: Storage) -> dict[str, bytes]:
    return {info.key: storage.read_bytes(info.key) for info in storage.list(FIXITY)}


def checked_keys(report: dict[str, Any], made: Destination) -> list[str]:
    names = {m.key.removesuffix(".tar"): m.key for m in made.bundles}
    return [names[item["name"]] for item in report["checked"]]


def test_budgeted_runs_cover_every_bundle_once_before_any_twice(
    capsys: pytest.CaptureFixture[str], backend: Backend, made: Destination,
) -> None:
    copy_into(made, backend.storage)
    everything = {m.key for m in made.bundles}
    order: list[str] = []
    before: dict[str, bytes] = {}
    for run in range(5):
        report = audit(capsys, backend.uri, "--max-bundles", "2")
        assert report["ok"] is True
        assert all(item["ok"] and item["problems"] == [] for item in report["checked"])
        keys = checked_keys(report, made)
        assert len(keys) == 2
        order += keys
        assert report["remaining"] == len(everything) - 2
        # Append only: every earlier record is still there, byte for byte, and one is new per
        # bundle checked.
        now = records(backend.storage)
        assert {k: now[k] for k in before} == before
        assert len(now) == len(before) + 2
        assert {item["record"] for item in report["checked"]} == set(now) - set(before)
        before = now
        if run == 0 and "local_paths" in backend.capabilities:
            # Never checked, the oldest bundles first (v20.1, then v20.2).
            assert keys == [made.by_version("v20.1.17").key, made.by_version("v20.2.19").key]
    assert set(order[:len(everything)]) == everything  # each once...
    assert len(set(order[:len(everything)])) == len(everything)
    # ...then again from the least recently checked.
    assert order[len(everything):] == order[:len(order) - len(everything)]
    schema = jsonschema.Draft202012Validator(
        json.loads(RECORD_SCHEMA.read_text()),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for key, content in before.items():
        record = json.loads(content)
        assert list(schema.iter_errors(record)) == []  # the published contract
        assert key.startswith(f"{FIXITY}{record['bundle']}/")
        assert (record["result"], record["ok"], record["origin"]) == ("ok", True, "audit")
        assert record["bytes_read"] > 0


def test_byte_budget_never_starves_a_large_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination,
) -> None:
    root = tmp_path / "dest"
    with open_storage(str(root), for_write=True) as storage:
        copy_into(made, storage)
    first = audit(capsys, str(root), "--max-bytes", "1")
    assert len(first["checked"]) == 1  # larger than the budget, and first in line
    assert first["budget"] == {"max_bundles": None, "max_bytes": 1}
    two = sum(made.size(k) for k in [made.by_version("v20.2.19").key,
                                     made.by_version("v21.1.21").key])
    second = audit(capsys, str(root), "--max-bytes", str(two))
    assert checked_keys(second, made) == [made.by_version("v20.2.19").key,
                                          made.by_version("v21.1.21").key]
    assert second["bytes_read"] == two


def flip_first_byte(storage: Storage, key: str) -> None:
    data = bytearray(storage.read_bytes(key))
    data[0] ^= 0xFF
    storage.put_bytes(key, bytes(data))


def test_a_damaged_bundle_is_found_named_and_counted(
    capsys: pytest.CaptureFixture[str], backend: Backend, made: Destination, tmp_path: Path,
) -> None:
    copy_into(made, backend.storage)
    victim = made.by_version("v21.1.21")
    sst = next(p for p in sorted((made.root / victim.key).rglob("*.sst")))
    damaged_path = sst.relative_to(made.root / victim.key).as_posix()
    flip_first_byte(backend.storage, f"{victim.key}/{damaged_path}")
    metrics = tmp_path / "audit.prom"
    report = audit(capsys, backend.uri, "--metrics-file", str(metrics), code=1)
    assert report["damaged"] == 1
    assert len(report["checked"]) == len(made.bundles)
    bad = [item for item in report["checked"] if not item["ok"]]
    assert [item["name"] for item in bad] == [victim.key]
    assert bad[0]["problems"] == [f"digest: {damaged_path}: BLAKE3 differs from "
                                  "manifest-blake3.txt"]
    record = json.loads(backend.storage.read_bytes(bad[0]["record"]))
    assert list(jsonschema.Draft202012Validator(json.loads(RECORD_SCHEMA.read_text()))
                .iter_errors(record)) == []
    assert record["result"] == "damaged"
    assert record["ok"] is False
    assert record["first_problems"][0]["path"] == damaged_path
    assert "-damaged-" in bad[0]["record"]
    assert gauges(metrics)["bundles_damaged"] == 1
    text = run_cli(capsys, "audit", backend.uri)
    assert text.code == 1
    assert f"{victim.key}: DAMAGED" in text.out
    listed = run_cli(capsys, "list", backend.uri, "--json")
    entry = next(b for b in json.loads(listed.out)["bundles"] if b["key"] == victim.key)
    assert entry["last_result"] == "damaged"


def gauges(path: Path) -> dict[str, float]:
    """Every audit gauge of the metrics file, read by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge"
        for sample in family.samples:
            assert set(sample.labels) == {"destination"}
            out[sample.name.removeprefix("crdb_archive_audit_")] = sample.value
    return out


def test_metrics(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                 made: Destination) -> None:
    root = tmp_path / "dest"
    with open_storage(str(root), for_write=True) as storage:
        copy_into(made, storage)
    metrics = tmp_path / "audit.prom"
    report = audit(capsys, str(root), "--max-bundles", "2", "--metrics-file", str(metrics))
    values = gauges(metrics)
    assert values["bundles"] == len(made.bundles)
    assert values["bundles_audited"] == 2
    assert values["bytes_read"] == sum(made.size(k) for k in checked_keys(report, made))
    assert values["bundles_never_verified"] == len(made.bundles) - 2
    assert values["oldest_verification_age_seconds"] == math.inf
    assert values["exit_code"] == 0
    audit(capsys, str(root), "--metrics-file", str(metrics))
    values = gauges(metrics)
    assert values["bundles_never_verified"] == 0
    assert 0 <= values["oldest_verification_age_seconds"] < 3600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".audit")] == []


def test_cold_bundles_are_skipped_and_take_no_budget(
    capsys: pytest.CaptureFixture[str], s3_env: MotoS3, made: Destination,
) -> None:
    from crdb_archive.storage.base import WriteOptions  # noqa: PLC0415

    bucket = s3_env.bucket()
    with open_storage(f"s3://{bucket}/cold") as storage:
        copy_into(made, storage)
        cold = made.by_version("v20.2.19")  # a tar: first in line, as its time is unknown
        storage.put_bytes(cold.key, (made.root / cold.key).read_bytes(),
                          options=WriteOptions(storage_class="DEEP_ARCHIVE"))
    report = audit(capsys, f"s3://{bucket}/cold", "--max-bundles", "1")
    assert [s["name"] for s in report["skipped"]] == [cold.key.removesuffix(".tar")]
    assert "crdb-archive restore-request" in report["skipped"][0]["reason"]
    assert len(report["checked"]) == 1
    assert report["ok"] is True
    listed = run_cli(capsys, "list", f"s3://{bucket}/cold", "--json")
    entry = next(b for b in json.loads(listed.out)["bundles"] if b["key"] == cold.key)
    assert (entry["storage_class"], entry["readable"]) == ("DEEP_ARCHIVE", False)


def test_an_audit_records_what_a_tar_in_object_storage_holds(
    capsys: pytest.CaptureFixture[str], s3_env: MotoS3, made: Destination,
) -> None:
    uri = f"s3://{s3_env.bucket()}/records"
    with open_storage(uri) as storage:
        copy_into(made, storage)
    tar = made.by_version("v22.2.17")
    before = json.loads(run_cli(capsys, "list", uri, "--json").out)
    assert next(b for b in before["bundles"] if b["key"] == tar.key)["version"] is None
    audit(capsys, uri)
    after = json.loads(run_cli(capsys, "list", uri, "--json").out)
    entry = next(b for b in after["bundles"] if b["key"] == tar.key)
    assert (entry["version"], entry["kind"], entry["problem"]) == ("v22.2.17", "backup", None)
    assert entry["last_result"] == "ok"


def test_allowed_signers_require_every_bundle_signed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination,
) -> None:
    assert made.key is not None
    root = tmp_path / "dest"
    with open_storage(str(root), for_write=True) as storage:
        copy_into(made, storage)
    allowed = allowed_file(tmp_path, f"archive {made.key.public_key}")
    report = audit(capsys, str(root), "--allowed-signers", str(allowed), code=1)
    signed = made.by_version("v23.1.11").key
    verdicts = {item["name"]: item["ok"] for item in report["checked"]}
    assert verdicts.pop(signed) is True
    assert set(verdicts.values()) == {False}
    unsigned = next(item for item in report["checked"] if not item["ok"])
    assert unsigned["problems"][0].startswith("signature: tagmanifest-sha256.txt.sig: the "
                                              "bundle is not signed")
    record = json.loads((root / next(item["record"] for item in report["checked"]
                                     if item["name"] == signed)).read_bytes())
    assert record["signature"] == {"present": True, "fingerprint": made.key.fingerprint,
                                   "checked": True, "valid": True}


def many_files_bundle(storage: Storage, name: str, files: int) -> None:
    def item(i: int) -> PayloadItem:
        content = (f"{name} {i}\n" * 200).encode()
        return PayloadItem(f"data/backup/{i:05d}.sst", len(content),
                           lambda: io.BytesIO(content))

    def describe(_: PayloadResult) -> dict[str, bytes]:
        return {"crdb-archive.json": b"{}\n", "RESTORE.md": b"# Restore\n"}

    write_bundle(storage, name, [item(i) for i in range(files)], bag_info=[],
                 describe=describe)


def test_sigterm_during_an_audit_leaves_no_half_record(tmp_path: Path) -> None:
    root = tmp_path / "dest"
    with open_storage(str(root), for_write=True) as storage:
        for name in ("a", "b", "c"):
            many_files_bundle(storage, f"bundle-{name}", 3000)
    metrics = tmp_path / "audit.prom"
    stopped = signal_during_task(["audit", str(root), "--json", "--metrics-file",
                                  str(metrics)], signal.SIGTERM, "verify ")
    assert stopped.returncode == 130, stopped.err
    assert json.loads(stopped.out) == {"error": "interrupted by SIGTERM", "exit_code": 130}
    with closing(open_storage(str(root))) as storage:
        written = records(storage)
    # Stopped before the end, and every record there is whole.
    assert len(written) < 3
    for content in written.values():
        assert json.loads(content)["format"] == "crdb-archive-fixity"
    assert list(root.rglob(f"{PARTIAL_PREFIX}*")) == []
    assert gauges(metrics)["exit_code"] == 130
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_record_dated_in_the_future_does_not_count(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination,
) -> None:
    root = tmp_path / "dest"
    with open_storage(str(root), for_write=True) as storage:
        copy_into(made, storage)
        oldest = made.by_version("v20.1.17").key
        # Written by hand (or by a host whose clock is years ahead): it claims a check in 2999.
        storage.put_bytes(f"{FIXITY}{oldest}/29990101T000000.000000Z-ok-0badc0de.json", b"{}")
        storage.put_bytes(f"{FIXITY}{oldest}/not-a-record.json", b"{}")
    listed = json.loads(run_cli(capsys, "list", str(root), "--json").out)
    entry = next(b for b in listed["bundles"] if b["key"] == oldest)
    assert entry["last_verified"] is None
    report = audit(capsys, str(root), "--max-bundles", "1")
    assert checked_keys(report, made) == [oldest]
    bad = run_cli(capsys, "audit", str(root), "--max-bytes", "lots")
    assert bad.code == 2
    assert "--max-bytes 'lots' is not a size" in bad.err

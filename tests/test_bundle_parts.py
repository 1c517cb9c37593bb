"""The pieces under the bundle: digests, manifest syntax, staging, names, and retrieval rules."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

import blake3
import pytest

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.publish import BundleStaging, write_bundle
from crdb_archive.bundle.reader import open_bundle
from crdb_archive.bundle.writer import PayloadItem
from crdb_archive.errors import BadInput, NotABundle, StorageError
from crdb_archive.hashing import blake3_of_file, copy_and_digest, parallel_in_batches
from crdb_archive.storage.base import open_storage, staging_name
from crdb_archive.storage.uri import parse_location, redact
from support.bundles import era_with_binaries, run_cli
from support.mirror import MirrorServer

# --- hashing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 1, (16 << 20) + 12345, 40 << 20])
def test_blake3_of_file_matches_reference(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    digests = blake3_of_file(path)
    assert digests.size == size
    assert digests.blake3 == blake3.blake3(path.read_bytes()).hexdigest()
    if shutil.which("b3sum"):
        printed = subprocess.run(["b3sum", "--no-names", str(path)], capture_output=True,
                                 text=True, check=True).stdout.strip()
        assert digests.blake3 == printed


def test_copy_and_digest_is_one_pass(tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 7)
    sink = io.BytesIO()
    seen: list[int] = []
    digests = copy_and_digest(io.BytesIO(data), sink, size_hint=len(data), on_chunk=seen.append)
    assert sink.getvalue() == data
    assert sum(seen) == len(data)
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.blake3 == blake3.blake3(data).hexdigest()


def test_parallel_in_batches_keeps_order_and_stops_on_error() -> None:
    items = list(range(1000))
    results = list(parallel_in_batches(lambda i: i * 2, items, lambda i: 1 << (i % 24),
                                       threads=3))
    assert results == [(i, i * 2) for i in items]

    def explode(i: int) -> int:
        if i == 500:
            raise ValueError("boom")
        return i

    with pytest.raises(ValueError, match="boom"):
        list(parallel_in_batches(explode, items, lambda i: 1, threads=3))


# --- manifest syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["data/a b.sst", "data/100%.sst", "data/line\nbreak",
                                  "data/cr\rx", "data/ünïcode/ß"])
def test_manifest_paths_round_trip(path: str) -> None:
    line = next(layout.manifest_lines([(path, "a" * 64)]))
    assert line.count("\n") == 1
    errors: list[str] = []
    entries = list(tagfiles.parse_entries(layout.MANIFEST_BLAKE3,
                                          tagfiles.lines_of(line.encode()), errors))
    assert errors == []
    assert entries == [tagfiles.Entry(path, bytes.fromhex("a" * 64))]


def test_manifest_parse_reports_bad_lines() -> None:
    errors: list[str] = []
    text = f"{'b' * 64}  data/x\nnot-a-digest  data/y\n{'c' * 64}  data/x\n"
    entries = list(tagfiles.parse_entries(layout.MANIFEST_BLAKE3,
                                          tagfiles.lines_of(text.encode()), errors))
    assert entries == [tagfiles.Entry("data/x", bytes.fromhex("b" * 64))]
    assert errors == ["line 2 is not '<lowercase hex digest>  <path>'",
                      "line 3 lists data/x twice"]


def _parsed_in_batches(name: str, text: bytes) -> tuple[list[tuple[str, bytes | int]],
                                                        list[str]]:
    reader = tagfiles.LineReader(name)
    errors: list[str] = []
    entries: list[tuple[str, bytes | int]] = []
    for batch in tagfiles.parse_entry_batches(name, reader.line_batches(io.BytesIO(text)),
                                              errors):
        if isinstance(batch.values, list):
            entries += zip(batch.paths, batch.values, strict=True)
        else:
            entries += [(path, batch.values[i * 32:(i + 1) * 32])
                        for i, path in enumerate(batch.paths)]
    return entries, reader.errors + errors


def test_large_manifest_in_batches_keeps_every_line_check() -> None:
    # 40,000 lines span several chunks of reading; the defects sit in later chunks, where
    # a batch that is not plainly good must still be checked line by line.
    digest = "ab" * 32
    lines = [f"{digest}  data/{i:06d}.sst\n" for i in range(40_000)]
    lines[25_000] = f"{digest}  data/024999.sst\n"  # listed twice
    lines[30_000] = f"{digest}  data/030000.sst/../x\n"  # not a payload path
    lines[35_000] = f"{digest}  data/035000%25.sst\n"  # percent-encoded, and good
    lines[38_000] = f"{digest.upper()}  data/038000.sst\n"  # not lowercase hex
    entries, errors = _parsed_in_batches(layout.MANIFEST_BLAKE3, "".join(lines).encode())
    assert errors == ["line 25001 lists data/024999.sst twice",
                      "line 30001 lists 'data/030000.sst/../x', which is not a payload path",
                      "line 38001 is not '<lowercase hex digest>  <path>'"]
    expected = {f"data/{i:06d}.sst" for i in range(40_000)} - {
        "data/025000.sst", "data/030000.sst", "data/035000.sst", "data/038000.sst"} | {
        "data/035000%.sst"}
    assert [path for path, _ in entries] == sorted(expected)
    assert {value for _, value in entries} == {bytes.fromhex(digest)}


def test_payload_sizes_in_batches_and_a_cr_lf_line_ends_the_parse() -> None:
    lines = [f"{i * 7}  data/{i:06d}.sst\n" for i in range(30_000)]
    lines[20_000] = "5  data/020000.sst\r\n"
    reader_entries, errors = _parsed_in_batches(layout.PAYLOAD_SIZES,
                                                "".join(lines).encode())
    assert errors == ["line 20001 ends in CR LF: lines of format 1 tag files end in LF alone"]
    assert reader_entries == [(f"data/{i:06d}.sst", i * 7) for i in range(20_000)]


@pytest.mark.parametrize("path", ["", "/abs", "data/../x", "data//x", "data/./x", "a\\b"])
def test_unsafe_paths(path: str) -> None:
    assert not layout.is_safe_relative(path)


@pytest.mark.parametrize("name", ["ok-name_1.2", "crdb-5f0e3c1a-20230112T03000012Z-v22.2.17"])
def test_valid_names(name: str) -> None:
    assert layout.is_valid_name(name)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x.tar", "x.partial", "sp ace",
                                  "a" * 201])
def test_invalid_names(name: str) -> None:
    assert not layout.is_valid_name(name)


# --- redaction ----------------------------------------------------------------------------------


def test_redaction_keeps_names_drops_values() -> None:
    uri = ("s3://bucket/prefix/path?AUTH=specified&AWS_ACCESS_KEY_ID=AKID&"
           "AWS_SECRET_ACCESS_KEY=s3cr3t&AWS_SESSION_TOKEN=t0k3n")
    shown = redact(uri)
    assert shown.startswith("s3://bucket/prefix/path?")
    for value in ("AKID", "s3cr3t", "t0k3n", "specified"):
        assert value not in shown
    for name in ("AUTH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert f"{name}=redacted" in shown
    assert "pa55" not in redact("https://user:pa55@mirror.example/path")
    assert redact("/plain/path") == "/plain/path"
    location = parse_location(uri)
    assert "s3cr3t" not in repr(location)
    assert "s3cr3t" not in str(location)


# --- staging ------------------------------------------------------------------------------------


def open_for_reading(path: Path) -> IO[bytes]:
    return path.open("rb")


def payload_of(tmp_path: Path, count: int = 3) -> list[PayloadItem]:
    items = []
    for i in range(count):
        path = tmp_path / f"src{i}"
        path.write_bytes(os.urandom(1000 + i))
        items.append(PayloadItem(f"data/backup/f{i}", path.stat().st_size,
                                 functools.partial(open_for_reading, path)))
    return items


def describe_nothing(_: object) -> dict[str, bytes]:
    return {layout.DESCRIPTION: b"{}\n", layout.RESTORE_MD: b"# restore\n"}


def test_stale_staging_of_a_dead_run_is_cleared(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    stale = dest / staging_name("b1")
    (stale / "b1" / "data").mkdir(parents=True)
    (stale / "b1" / "data" / "half-written").write_bytes(b"x" * 10)
    written = write_bundle(open_storage(str(dest)), "b1", payload_of(tmp_path), bag_info=[],
                           describe=describe_nothing)
    assert written.location == str(dest / "b1")
    assert sorted(p.name for p in dest.iterdir()) == ["b1"]
    assert not (Path(written.location) / "data" / "half-written").exists()


def test_concurrent_writer_of_same_bundle_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    staging = dest / staging_name("b1")
    staging.mkdir(parents=True)
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StorageError, match="another crdb-archive run"):
            write_bundle(open_storage(str(dest)), "b1", payload_of(tmp_path), bag_info=[],
                         describe=describe_nothing)
    finally:
        os.close(fd)


def test_source_changing_during_archive_is_an_error(tmp_path: Path) -> None:
    items = payload_of(tmp_path)
    lying = PayloadItem(items[0].path, items[0].size + 5, items[0].open)
    dest = tmp_path / "dest"
    with pytest.raises(StorageError, match="changed while it was archived"):
        write_bundle(open_storage(str(dest)), "b1", [lying, *items[1:]], bag_info=[],
                     describe=describe_nothing)
    assert not dest.exists()  # made for this bundle, and removed again with its staging


def test_payload_outside_data_refused(tmp_path: Path) -> None:
    item = payload_of(tmp_path, 1)[0]
    escaping = PayloadItem("data/../bagit.txt", item.size, item.open)
    with BundleStaging(open_storage(str(tmp_path / "dest")), "b1") as staging, \
            pytest.raises(BadInput):
        staging.write([escaping], bag_info=[], describe=describe_nothing)


def test_tar_form_members_and_order(tmp_path: Path) -> None:
    written = write_bundle(open_storage(str(tmp_path / "dest")), "b1", payload_of(tmp_path),
                           bag_info=[],
                           describe=describe_nothing, fmt="tar")
    listing = subprocess.run(["tar", "tf", written.location], capture_output=True, text=True,
                             check=True).stdout.split()
    assert all(name.startswith("b1/") for name in listing)
    assert listing[-1] == "b1/tagmanifest-sha256.txt"
    assert listing.index("b1/data/backup/f0") < listing.index("b1/bagit.txt")


# --- inspect, binary, verify on real bundles ------------------------------------------------------


@pytest.fixture
def bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
           monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(tmp_path / "bundles"),
                     "--mirror", mirror.url, "--json")
    assert result.code == 0, result.err
    return Path(str(result.json()["bundle"]))


def test_inspect_bundle(capsys: pytest.CaptureFixture[str], bundle: Path) -> None:
    result = run_cli(capsys, "inspect", str(bundle), "--json")
    assert result.code == 0
    summary = result.json()
    assert summary["kind"] == "bundle"
    assert summary["version"] == "v23.1.11"
    assert summary["restorable_into"] == ["v23.1", "v23.2"]
    assert summary["platforms"] == ["linux-amd64"]
    text = run_cli(capsys, "inspect", str(bundle))
    assert "v23.1.11" in text.out


def test_binary_for_missing_platform_names_published_checksum(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path
) -> None:
    description = json.loads((bundle / "crdb-archive.json").read_text())
    other = next(p for p in description["other_platforms"] if p["platform"] == "darwin-arm64")
    result = run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "out"),
                     "--platform", "darwin-arm64")
    assert result.code == 1
    assert "linux-amd64" in result.err
    if other["published_sha256"]:
        assert other["published_sha256"] in result.err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_other_platform_checksums_recorded(bundle: Path, mirror: MirrorServer) -> None:
    description = json.loads((bundle / "crdb-archive.json").read_text())
    recorded = {p["platform"]: p for p in description["other_platforms"]}
    assert set(recorded) == {"linux-arm64", "linux-amd64-fips", "darwin-amd64", "darwin-arm64",
                             "windows-amd64"}
    # The mirror publishes only linux-amd64: the others are recorded without a checksum.
    assert all(p["published_sha256"] is None for p in recorded.values())
    assert any("not recorded" in w for w in description["warnings"])


def test_binary_refuses_tampered_archive(capsys: pytest.CaptureFixture[str], bundle: Path,
                                         tmp_path: Path) -> None:
    archive = next((bundle / "data" / "cockroach").glob("*.tgz"))
    data = bytearray(archive.read_bytes())
    data[200] ^= 0xFF
    archive.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run_cli(capsys, "binary", str(bundle), "--to", str(out))
    assert result.code == 1
    assert "does not match" in result.err
    assert list(out.iterdir()) == []


def test_restore_md_is_specific(bundle: Path) -> None:
    text = (bundle / "RESTORE.md").read_text()
    assert "cockroach-v23.1.11.linux-amd64.tgz" in text
    assert "start-single-node" in text
    assert "RESTORE FROM 'nodelocal://1/backup'" in text
    assert "v23.1, v23.2" in text
    assert "v23.1 -> v23.2 -> v24.1" in text


def test_verify_json_contract(capsys: pytest.CaptureFixture[str], bundle: Path) -> None:
    result = run_cli(capsys, "verify", str(bundle), "--json")
    payload = result.json()
    assert {"ok", "problems", "files", "bytes"} <= set(payload)
    assert payload["ok"] is True


def test_open_bundle_refuses_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(NotABundle, match=r"no bagit\.txt"):
        open_bundle(tmp_path)


def test_published_schema_is_the_one_the_package_uses() -> None:
    root = Path(__file__).resolve().parent.parent
    published = root / "archive-specs" / "bundle-manifest.schema.json"
    shipped = root / "src" / "crdb_archive" / "schemas" / "bundle-manifest.schema.json"
    assert published.read_bytes() == shipped.read_bytes()

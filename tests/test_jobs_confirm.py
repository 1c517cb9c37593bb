"""A run confirms the bundle it uploads by the store's checksums instead of downloading it.

Against moto's S3 server, fake-gcs-server and Azurite on 127.0.0.1, each behind the fault
proxy, whose log counts the bytes every response carried: a run that archives one bundle reads
back no more than its tag files. An object changed behind the writer's back between the upload
and the check (from the run's own event callback, through the store's SDK) fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

import pytest

from crdb_archive.errors import ExitCode
from crdb_archive.jobs import JobEvent, JobReport, load_spec, run_job
from support.azure import Azurite
from support.backups import add_random_sst
from support.bundles import era_with_binaries
from support.faultproxy import FaultProxy, LoggedRequest, through
from support.gcs import FakeGcs
from support.mirror import MirrorServer
from support.s3 import MotoS3

PART = 8 << 20
TAG_FILES = ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-blake3.txt",
             "payload-sizes.txt", "tagmanifest-sha256.txt", "crdb-archive.json", "RESTORE.md",
             "tagmanifest-sha256.txt.sig")


pytestmark = pytest.mark.usefixtures("mirrored")


def write_spec(tmp_path: Path, source: Path, dest: str, fmt: str) -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "all"\n'
                    f'[destination]\nuri = "{dest}"\nformat = "{fmt}"\n')
    return spec


def run(spec: Path, on_event: Callable[[JobEvent], None] | None = None
        ) -> tuple[JobReport, list[JobEvent]]:
    events: list[JobEvent] = []

    def record(event: JobEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    return run_job(load_spec(spec), on_event=record), events


def one(events: list[JobEvent], kind: str) -> dict[str, object]:
    (found,) = [e.fields for e in events if e.event == kind]
    return found


def downloaded(proxy: FaultProxy, matches: Callable[[LoggedRequest], bool]) -> int:
    """Bytes of object content the proxy served (GETs of the objects ``matches`` picks)."""
    return sum(r.body_bytes for r in proxy.requests() if r.method == "GET" and matches(r))


def composite(data: bytes) -> str:
    """S3's checksum of ``data`` uploaded in parts of 8 MiB."""
    parts = [hashlib.sha256(data[i:i + PART]).digest() for i in range(0, len(data), PART)]
    joined = hashlib.sha256(b"".join(parts)).digest()
    return base64.b64encode(joined).decode("ascii")


# --- S3 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_a_run_to_s3_reads_back_only_the_tag_files(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, s3_proxy: FaultProxy,
        fmt: str) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", fmt))
    assert report.exit_code == ExitCode.OK, report.failures
    (name,) = report.written
    key = f"orders/{name}" + (".tar" if fmt == "tar" else "")
    with closing(s3_env.client()) as client:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]
    objects = {o["Key"]: o["Size"] for o in listed
               if o["Key"] == key or o["Key"].startswith(key + "/")}
    verify = one(events, "verify")
    assert (verify["ok"], verify["confirmed"]) == (True, "store-checksums")
    assert (verify["objects"], verify["by_store"], verify["read_back"]) == (
        len(objects), len(objects), [])
    read = downloaded(s3_proxy, lambda r: r.path.startswith(f"/{bucket}/{key}"))
    assert verify["tag_files_read"] is True
    if fmt == "tar":
        # One object, confirmed by its checksum; its tag files are read from where they start
        # (behind the payload): their bytes, a header block each, the tar's closing blocks.
        with closing(s3_env.client()) as client:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            members = [m for m in tar.getmembers() if m.name.rsplit("/", 1)[-1] in TAG_FILES]
        tags = sum(m.size for m in members)
        assert tags + 512 * len(members) <= read <= tags + 1024 * len(members) + 2 * 10240
        assert read < len(body) // 2
        return
    tags = sum(size for k, size in objects.items()
               if k.removeprefix(key + "/") in TAG_FILES)
    assert 0 < read <= tags


def test_a_bundle_larger_than_a_part_is_confirmed_by_its_composite_checksum(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, s3_proxy: FaultProxy) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    sst = add_random_sst(era.path, 9)  # 9 MiB: two parts of a multipart upload
    bucket = s3_env.bucket()
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", "dir"))
    assert report.exit_code == ExitCode.OK, report.failures
    (name,) = report.written
    verify = one(events, "verify")
    assert verify["by_store"] == verify["objects"]
    assert verify["read_back"] == []
    with closing(s3_env.client()) as client:
        keys = [o["Key"] for o in client.list_objects_v2(
            Bucket=bucket, Prefix=f"orders/{name}/")["Contents"]]
        (big,) = [k for k in keys if k.endswith("/999999.sst")]
        head = client.head_object(Bucket=bucket, Key=big, ChecksumMode="ENABLED")
    # What the store keeps is the composite of the test's own bytes in two 8 MiB parts (S3
    # writes "-2" after it; moto leaves the count out).
    assert head["ChecksumSHA256"].partition("-")[0] == composite(sst.read_bytes())
    assert downloaded(s3_proxy, lambda r: r.path.endswith("/999999.sst")) == 0


def test_a_tar_larger_than_a_part_is_confirmed_without_reading_it(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, s3_proxy: FaultProxy) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 9)
    bucket = s3_env.bucket()
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", "tar"))
    assert report.exit_code == ExitCode.OK, report.failures
    (name,) = report.written
    verify = one(events, "verify")
    assert (verify["objects"], verify["by_store"], verify["read_back"]) == (1, 1, [])
    read = downloaded(s3_proxy, lambda r: f"/orders/{name}" in r.path)
    with closing(s3_env.client()) as client:
        body = client.get_object(Bucket=bucket, Key=f"orders/{name}.tar")["Body"].read()
        head = client.head_object(Bucket=bucket, Key=f"orders/{name}.tar",
                                  ChecksumMode="ENABLED")
    assert len(body) > PART
    assert 0 < read < 1 << 20  # the tag files at its end, not the 9 MiB before them
    assert head["ChecksumSHA256"].partition("-")[0] == composite(body)


def replace_on_archive(s3: MotoS3, bucket: str, pick: Callable[[list[str]], str],
                       change: Callable[[bytes], bytes], *, checksum: bool
                       ) -> tuple[Callable[[JobEvent], None], list[str]]:
    """An event callback that, once the bundle is uploaded and before it is checked, replaces
    the object ``pick`` chooses with ``change`` of its bytes; the key it replaced."""
    replaced: list[str] = []

    def on_event(event: JobEvent) -> None:
        if event.event != "archive" or not event.fields.get("created"):
            return
        with closing(s3.client()) as client:
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
            key = pick(keys)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
            client.put_object(Bucket=bucket, Key=key, Body=change(data), **extra)  # type: ignore[arg-type]
        replaced.append(key)

    return on_event, replaced


def flip_first(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


def payload_object(keys: list[str]) -> str:
    return next(k for k in keys if "/data/" in k and k.endswith("BACKUP_MANIFEST"))


def tar_object(keys: list[str]) -> str:
    return next(k for k in keys if k.endswith(".tar"))


@pytest.mark.parametrize(("fmt", "pick"), [("dir", payload_object), ("tar", tar_object)])
def test_an_object_changed_after_its_upload_fails_the_runs_check(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, fmt: str,
        pick: Callable[[list[str]], str]) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    on_event, replaced = replace_on_archive(s3_env, bucket, pick, flip_first, checksum=True)
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", fmt),
                         on_event)
    assert replaced
    assert report.exit_code == ExitCode.NO
    assert [f.step for f in report.failures] == ["verify"]
    verify = one(events, "verify")
    assert verify["ok"] is False
    problems = verify["problems"]
    assert isinstance(problems, list)
    assert len(problems) == 1
    assert replaced[0].removeprefix("orders/") in problems[0]
    assert "computed while uploading" in problems[0]
    with closing(s3_env.client()) as client:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    (record,) = [k for k in keys if "/.crdb-archive/fixity/" in k]
    assert "-damaged-" in record


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "other-bytes"])
def test_an_object_without_the_stores_checksum_is_read_back(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, s3_proxy: FaultProxy,
        same: bool) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    # Written again without a SHA-256: the store has none of the receipt's checksums.
    on_event, replaced = replace_on_archive(
        s3_env, bucket, payload_object, (lambda d: d) if same else flip_first, checksum=False)
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", "dir"),
                         on_event)
    (key,) = replaced
    with closing(s3_env.client()) as client:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    verify = one(events, "verify")
    assert verify["read_back"] == [key.removeprefix("orders/")]
    assert verify["bytes_read"] == size
    assert verify["by_store"] == int(str(verify["objects"])) - 1
    assert "read back whole" in str(verify["note"])
    assert downloaded(s3_proxy, lambda r: r.path == f"/{bucket}/{key}") >= size
    if same:
        assert report.exit_code == ExitCode.OK, report.failures
        assert verify["ok"] is True
    else:
        assert report.exit_code == ExitCode.NO
        assert verify["ok"] is False
        assert re.search(r"its SHA-256 \S+ differs", str(verify["problems"]))


# --- Cloud Storage and Azure ---------------------------------------------------------------------


def test_a_run_to_cloud_storage_reads_back_only_the_tag_files(
        tmp_path: Path, mirror: MirrorServer, gcs_env: FakeGcs, gcs_proxy: FaultProxy) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    report, events = run(write_spec(tmp_path, era.path, f"gs://{bucket}/orders", "dir"))
    assert report.exit_code == ExitCode.OK, report.failures
    (name,) = report.written
    objects = {b.name: b.size for b in gcs_env.client().list_blobs(bucket,
                                                                   prefix=f"orders/{name}/")}
    verify = one(events, "verify")
    assert (verify["objects"], verify["by_store"], verify["read_back"]) == (
        len(objects), len(objects), [])
    tags = sum(int(size) for k, size in objects.items()
               if k.removeprefix(f"orders/{name}/") in TAG_FILES)

    def media(request: LoggedRequest) -> bool:  # downloads, not metadata
        return "alt=media" in request.query and f"orders/{name}/" in unquote(request.path)

    assert 0 < downloaded(gcs_proxy, media) <= tags


def test_a_run_to_azure_reads_back_only_the_tag_files(
        tmp_path: Path, mirror: MirrorServer, azure_env: Azurite,
        azure_proxy: FaultProxy) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 9)  # committed as a block list, its MD5 given on commit
    container = azure_env.container()
    uri = azure_env.uri(container, "orders").replace(azure_env.endpoint_url,
                                                     through(azure_proxy))
    report, events = run(write_spec(tmp_path, era.path, uri, "dir"))
    assert report.exit_code == ExitCode.OK, report.failures
    (name,) = report.written
    with azure_env.service() as service:
        objects = {b.name: b.size for b in service.get_container_client(container).list_blobs(
            name_starts_with=f"orders/{name}/")}
    verify = one(events, "verify")
    assert (verify["objects"], verify["by_store"], verify["read_back"]) == (
        len(objects), len(objects), [])
    tags = sum(size for k, size in objects.items()
               if k.removeprefix(f"orders/{name}/") in TAG_FILES)
    assert 0 < downloaded(
        azure_proxy, lambda r: f"/{container}/orders/{name}/" in r.path) <= tags


def test_the_runs_fixity_record_says_how_the_bundle_was_confirmed(
        tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    report, events = run(write_spec(tmp_path, era.path, f"s3://{bucket}/orders", "dir"))
    assert report.exit_code == ExitCode.OK, report.failures
    objects = one(events, "verify")["objects"]
    with closing(s3_env.client()) as client:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        (key,) = [k for k in keys if "/.crdb-archive/fixity/" in k]
        record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (record["origin"], record["result"], record["mode"]) == (
        "run", "ok", "store-checksums")
    assert record["bytes_read"] == 0
    assert record["note"] == f"{objects} objects confirmed by the store's checksums of the upload"

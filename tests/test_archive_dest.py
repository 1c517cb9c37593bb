"""Where a bundle may go: refused before anything is written, or written as asked.

A destination inside its source (or equal to it) would put the bundle into the backup it
archives; a destination that exists as a file can never be one; an invalid option must be
found before the destination directory is created. Each is bad input (exit 2) with one line,
and leaves the file system and the bucket exactly as they were.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from crdb_archive.storage.places import overlap
from support.backups import ERAS, upload
from support.bundles import era_with_binaries, run_cli, tree
from support.cli import CliResult
from support.mirror import MirrorServer
from support.s3 import MotoS3


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def refused(result: CliResult, *fragments: str) -> None:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("crdb-archive: error: ")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err


# --- a destination inside the source ------------------------------------------------------------


@pytest.mark.parametrize(("where", "says"), [
    (".", "is the source itself"),
    ("bundles", "is inside the source"),
    ("data/deeper/bundles", "is inside the source"),
])
def test_local_dest_in_the_source_is_refused_before_writing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, where: str,
    says: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    before = tree(era.path)
    dest = era.path / where
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--json")
    refused(result, says, "keep bundles apart from the backups")
    assert result.json()["exit_code"] == 2
    assert tree(era.path) == before  # not even an empty directory or a staging area
    assert [p for p in era.path.rglob("*") if p.is_dir() and not any(p.iterdir())] == []
    assert mirror.requests() == []  # refused before any download


def test_dest_reaching_into_the_source_through_a_link_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    before = tree(era.path)
    link = tmp_path / "archive-here"
    link.symlink_to(era.path / "data")
    refused(run_cli(capsys, "archive", str(era.path), "--dest", str(link / "bundles")),
            "is inside the source")
    # And the other way round: a source given through a link to the real destination's parent.
    alias = tmp_path / "alias"
    alias.symlink_to(era.path)
    refused(run_cli(capsys, "archive", f"file://{alias}", "--dest", str(era.path / "b")),
            "is inside the source")
    assert tree(era.path) == before


def test_dest_beside_or_around_the_source_is_fine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    # A name that merely starts like the source's is not inside it.
    beside = era.path.with_name(era.path.name + "-bundles")
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(beside), "--json")
    assert result.code == 0, result.err
    assert Path(str(result.json()["bundle"])).parent == beside
    # The bundle lands next to the backup, not in it: archive allows that (a job does not).
    around = era.path.parent
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(around), "--json")
    assert result.code == 0, result.err
    assert Path(str(result.json()["bundle"])).parent == around


@pytest.mark.parametrize(("dest_prefix", "says"), [
    ("backups", "is the source itself"),
    ("backups/bundles", "is inside the source"),
    ("backups/v23.1/x", "is inside the source"),
])
def test_s3_dest_in_the_source_is_refused_before_writing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
    dest_prefix: str, says: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    source = upload(s3_env, era.path, "backups")
    bucket = source.removeprefix("s3://").split("/")[0]
    keys = s3_env.all_keys(bucket)
    result = run_cli(capsys, "archive", source, "--dest", f"s3://{bucket}/{dest_prefix}")
    refused(result, says, f"s3://{bucket}/{dest_prefix}")
    assert s3_env.all_keys(bucket) == keys
    assert s3_env.multipart_uploads(bucket) == []


def test_s3_dest_beside_the_source_in_the_same_bucket_is_fine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    source = upload(s3_env, era.path, "backups")
    bucket = source.removeprefix("s3://").split("/")[0]
    result = run_cli(capsys, "archive", source, "--dest", f"s3://{bucket}/backups-bundles",
                     "--json")
    assert result.code == 0, result.err
    assert str(result.json()["bundle"]).startswith(f"s3://{bucket}/backups-bundles/")


def test_overlap_compares_endpoints_buckets_and_whole_segments(tmp_path: Path) -> None:
    inside = "dest-inside-source"
    assert overlap("s3://bkt/p", "s3://bkt/p/q", source_endpoint_url="http://s3.lan",
                   dest_endpoint_url="HTTP://S3.LAN:80/") == inside
    assert overlap("s3://bkt/p", "s3://bkt/p/q", source_endpoint_url="http://a.lan",
                   dest_endpoint_url="http://b.lan") is None
    # An endpoint in the URI itself counts, as the S3 client would use it.
    assert overlap("s3://bkt/p?AWS_ENDPOINT=http://a.lan", "s3://bkt/p/q",
                   dest_endpoint_url="http://a.lan") == inside
    assert overlap("s3://bkt/p", "s3://other/p/q") is None
    assert overlap("s3://bkt/p", "s3://bkt/pq") is None
    assert overlap("s3://bkt/p/", "s3://bkt//p") == "same"
    assert overlap("s3://bkt/p/q", "s3://bkt") == "source-inside-dest"
    assert overlap(str(tmp_path), f"s3://bkt{tmp_path}") is None
    assert overlap(str(tmp_path / "a"), str(tmp_path / "a" / ".." / "a" / "b")) == inside


# --- a destination that is not a directory --------------------------------------------------------


def test_dest_that_is_a_file_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    refused(run_cli(capsys, "archive", str(era.path), "--dest", "/dev/null"),
            "the destination /dev/null is not a directory")
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"keep me")
    refused(run_cli(capsys, "archive", str(era.path), "--dest", str(a_file)),
            f"the destination {a_file} is not a directory")
    refused(run_cli(capsys, "archive", str(era.path), "--dest", str(a_file / "bundles")),
            f"{a_file} is not a directory")
    assert a_file.read_bytes() == b"keep me"
    assert mirror.requests() == []


# --- option values are checked before the destination is made -------------------------------------


@pytest.mark.parametrize(("options", "says"), [
    (["--platform", "solaris-sparc"], "unknown platform 'solaris-sparc'"),
    (["--platform", "linux-amd64", "--platform", "beos-ppc"], "unknown platform 'beos-ppc'"),
    (["--format", "zip"], "--format 'zip'"),
    (["--name", ".hidden"], "is not a portable file name"),
    (["--name", "a/b"], "is not a portable file name"),
    (["--object-lock-days", "5"], "need --object-lock-mode"),
    (["--object-lock-mode", "GOVERNANCE", "--object-lock-days", "5"],
     "a local --dest has no storage class or Object Lock"),
    (["--object-lock-mode", "LOOSE"], "--object-lock-mode 'LOOSE'"),
    (["--version", "v23.1"], "names a major version"),
    (["--version", "v23.1.99", "--force-version"], "v23.1.99 is not a release in the"),
])
def test_invalid_options_leave_no_destination_behind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    options: list[str], says: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "new" / "bundles"
    refused(run_cli(capsys, "archive", str(era.path), "--dest", str(dest), *options), says)
    assert not (tmp_path / "new").exists()
    assert mirror.requests() == []


def test_platform_the_release_never_had_leaves_no_destination_behind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v20.2")  # v20.2.19: no linux-arm64 build
    dest = tmp_path / "bundles"
    refused(run_cli(capsys, "archive", str(era.path), "--dest", str(dest),
                    "--platform", "linux-arm64"),
            "v20.2.19 was never published for linux-arm64")
    assert not dest.exists()
    assert mirror.requests() == []


def test_failed_first_archive_leaves_no_empty_destination(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["v23.1"](tmp_path / "backups")  # its release is not on the mirror
    (tmp_path / "kept").mkdir()
    dest = tmp_path / "kept" / "new" / "bundles"
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest))
    assert result.code == 3, result.err
    assert "not found on the mirror" in result.err
    assert list((tmp_path / "kept").iterdir()) == []  # what existed before stays


# --- job destinations -----------------------------------------------------------------------------


def test_job_destination_that_is_a_file_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    a_file = tmp_path / "bundles"
    a_file.write_bytes(b"keep me")
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "orders"\n[source]\nuri = "{era.path}"\n'
                    f'[destination]\nuri = "{a_file}"\n')
    result = run_cli(capsys, "run", str(spec), "--json")
    assert result.code == 2, result.err
    events = [line for line in result.out.splitlines() if line]
    assert '"step":"run"' in events[0]
    assert f"the destination {a_file} is not a directory" in events[0]
    assert a_file.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["backups", "bundles", "job.toml", "mirror"])
    assert mirror.requests() == []


def test_job_with_an_s3_destination_inside_its_source_is_an_invalid_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, s3_env: MotoS3
) -> None:
    bucket = s3_env.bucket()
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "orders"\n[source]\nuri = "s3://{bucket}/backups"\n'
                    f'[destination]\nuri = "s3://{bucket}/backups/bundles"\n')
    result = run_cli(capsys, "run", str(spec))
    assert result.code == 2
    assert (f"destination.uri: the destination s3://{bucket}/backups/bundles is inside the "
            f"source s3://{bucket}/backups") in result.err
    with closing(s3_env.client()) as client:
        assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

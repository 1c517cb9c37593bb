"""Encrypted backups end to end through the CLI: inspect and archive with a passphrase or an
AWS KMS key (moto's KMS over HTTP), RESTORE.md, verify --decrypt-check, one-line refusals with
the right exit codes, and no secret in any output, bundle file or the process list."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bagit
import pytest

from crdb_archive.backup.keys import PASSPHRASE_ENV
from crdb_archive.bundle.model import schema_problems
from crdb_archive.cli import options
from support.backups import T0, Manifest, checksum, upload, write, write_backup
from support.bundles import run_cli, tree, xor_byte
from support.encryption import PASSPHRASE, SEALED, Encrypting, cut_after_chunks, with_passphrase
from support.kms import KmsKey, create_key, with_kms
from support.mirror import MirrorServer
from support.release_archives import publish
from support.s3 import MotoS3

RELEASE = "v23.1.11"
MANIFEST = Manifest(end_time=T0, build_tag=RELEASE, padding=150_000)
KMS_SECRET = "kmsS3cret+Zz9/unique-4c1d"

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "passphrase"
    write(path, PASSPHRASE + b"\n")
    return path


def encrypted_backup(tmp_path: Path, sealing: Encrypting | None = None) -> Path:
    path = tmp_path / "backups" / "encrypted"
    write_backup(path, MANIFEST, encrypt=sealing or with_passphrase())
    return path


def assert_no_secret(texts: list[str], files: dict[str, bytes], *secrets: bytes) -> None:
    for secret in secrets:
        for text in texts:
            assert secret.decode() not in text
        for name, content in files.items():
            assert secret not in content, name


# --- inspect ----------------------------------------------------------------------------------


def test_inspect_with_a_passphrase_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        passphrase_file: Path) -> None:
    path = encrypted_backup(tmp_path)
    result = run_cli(capsys, "inspect", str(path), "--encryption-passphrase-file",
                     str(passphrase_file), "--json")
    assert result.code == 0, result.err
    payload = result.json()
    assert payload["build_tag"] == RELEASE
    assert payload["major_version"] == "v23.1"
    assert payload["encryption"] == {"mode": "passphrase", "decrypted": True, "kms": [],
                                     "encryption_info_files": ["ENCRYPTION-INFO"]}
    text = run_cli(capsys, "inspect", str(path), "--encryption-passphrase-file",
                   str(passphrase_file))
    assert f"version:          {RELEASE} (build tag)" in text.out
    assert "encryption:       encrypted with a passphrase, decrypted" in text.out
    assert_no_secret([result.out, result.err, text.out, text.err], {}, PASSPHRASE)


def test_inspect_with_the_environment(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE.decode())
    result = run_cli(capsys, "inspect", str(encrypted_backup(tmp_path)), "--json")
    assert result.code == 0, result.err
    assert result.json()["build_tag"] == RELEASE
    # Read once, then gone: no process this one starts inherits it.
    assert PASSPHRASE_ENV not in os.environ
    assert options.PASSPHRASE_ENV == PASSPHRASE_ENV


def test_inspect_without_a_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "inspect", str(encrypted_backup(tmp_path)))
    assert result.code == 0, result.err
    assert "version:          unknown: encrypted backup" in result.out
    assert "encryption:       encrypted with a passphrase, not decrypted" in result.out


def test_wrong_passphrase_is_exit_2_in_one_line(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"Not-The-Passphrase-31337\n")
    result = run_cli(capsys, "inspect", str(encrypted_backup(tmp_path)),
                     "--encryption-passphrase-file", str(wrong), "--json")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "wrong passphrase" in result.err
    assert json.loads(result.out)["exit_code"] == 2
    assert "31337" not in result.err + result.out


def test_damaged_encrypted_manifest_is_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              passphrase_file: Path) -> None:
    path = encrypted_backup(tmp_path)
    xor_byte(path / "BACKUP_MANIFEST", 20 + SEALED + 7)
    result = run_cli(capsys, "inspect", str(path), "--encryption-passphrase-file",
                     str(passphrase_file))
    assert result.code == 1
    assert "damaged" in result.err
    assert result.err.count("\n") == 1


def test_cut_at_a_chunk_boundary_is_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           passphrase_file: Path) -> None:
    path = encrypted_backup(tmp_path)
    manifest = path / "BACKUP_MANIFEST"
    cut = cut_after_chunks(manifest.read_bytes(), 2)
    manifest.write_bytes(cut)
    write(path / "BACKUP_MANIFEST-CHECKSUM", checksum(cut))  # consistent: only GCM tells
    result = run_cli(capsys, "inspect", str(path), "--encryption-passphrase-file",
                     str(passphrase_file))
    assert result.code == 1
    assert "chunk boundary" in result.err


@pytest.mark.parametrize(("args", "words"), [
    (["--kms", "gs:///projects/p/locations/global/keyRings/r/cryptoKeys/k?AUTH=implicit"],
     "Google Cloud KMS keys (gs://) are recognised but not supported yet"),
    (["--kms", "azure-kms:///key/1?AUTH=implicit"], "Azure Key Vault"),
    (["--kms", f"aws:///k?AUTH=specified&AWS_ACCESS_KEY_ID=a&AWS_SECRET_ACCESS_KEY={KMS_SECRET}"],
     "process list"),
    (["--kms", "aws:///k?AUTH=implicit", "--encryption-passphrase-file", "{passphrase}"],
     "both a passphrase"),
    (["--encryption-passphrase-file", "{missing}"], "cannot read encryption passphrase file"),
])
def test_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path, passphrase_file: Path,
                  args: list[str], words: str) -> None:
    filled = [a.format(passphrase=passphrase_file, missing=tmp_path / "missing") for a in args]
    result = run_cli(capsys, "inspect", str(encrypted_backup(tmp_path)), *filled)
    assert result.code == 2
    assert words in result.err
    assert result.err.count("\n") == 1
    assert KMS_SECRET not in result.err


# --- archive ----------------------------------------------------------------------------------


def archive(capsys: pytest.CaptureFixture[str], source: Path, dest: Path, mirror: MirrorServer,
            *extra: str) -> dict[str, object]:
    result = run_cli(capsys, "archive", str(source), "--dest", str(dest), "--mirror",
                     mirror.url, "--json", *extra)
    assert result.code == 0, result.err
    assert_no_secret([result.out, result.err], {}, PASSPHRASE, KMS_SECRET.encode())
    return result.json()


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_archive_with_a_passphrase_without_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    passphrase_file: Path, fmt: str,
) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64"])
    path = encrypted_backup(tmp_path)
    dest = tmp_path / "bundles"
    done = archive(capsys, path, dest, mirror, "--format", fmt,
                   "--encryption-passphrase-file", str(passphrase_file))
    assert done["version"] == RELEASE
    # Named like any readable backup: cluster, end time, version (not enc<digest>).
    assert str(done["name"]) == f"crdb-5f0e3c1a-20230602T093257.93Z-{RELEASE}"
    bundle = Path(str(done["bundle"]))
    if fmt == "tar":
        subprocess.run(["tar", "xf", str(bundle), "-C", str(tmp_path)], check=True)
        bundle = tmp_path / str(done["name"])
    bagit.Bag(str(bundle)).validate()
    description = json.loads((bundle / "crdb-archive.json").read_text())
    assert description["cockroachdb"]["version_source"] == "manifest"
    assert description["backup"]["encrypted"] is True
    assert description["backup"]["encryption"] == {
        "mode": "passphrase", "decrypted": True, "kms": [],
        "encryption_info_files": ["ENCRYPTION-INFO"]}
    restore = (bundle / "RESTORE.md").read_text()
    assert ("RESTORE FROM 'nodelocal://1/backup' WITH encryption_passphrase = "
            "'<your passphrase>';") in restore
    assert "Backup-Encryption: passphrase" in (bundle / "bag-info.txt").read_text()
    summary = run_cli(capsys, "inspect", str(bundle))
    assert "0 incremental backups, encrypted (passphrase)" in summary.out
    assert_no_secret([], tree(bundle), PASSPHRASE)
    # The backup is archived byte for byte, ENCRYPTION-INFO included.
    assert (bundle / "data" / "backup" / "ENCRYPTION-INFO").read_bytes() == (
        path / "ENCRYPTION-INFO").read_bytes()


def test_archive_without_a_key_still_needs_the_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
) -> None:
    refused = run_cli(capsys, "archive", str(encrypted_backup(tmp_path)), "--dest",
                      str(tmp_path / "bundles"), "--mirror", mirror.url)
    assert refused.code == 2
    assert "--version" in refused.err
    assert "--encryption-passphrase-file" in refused.err


def test_archive_and_verify_with_kms(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     mirror: MirrorServer, s3_env: MotoS3) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64"])
    key = create_key(s3_env)
    path = encrypted_backup(tmp_path, with_kms(s3_env, key))
    uri_file = tmp_path / "secrets" / "kms"
    write(uri_file, (key.uri(secret=KMS_SECRET) + "\n").encode())
    dest = tmp_path / "bundles"
    done = archive(capsys, path, dest, mirror, "--kms", f"@{uri_file}")
    assert done["version"] == RELEASE
    bundle = Path(str(done["bundle"]))
    description = json.loads((bundle / "crdb-archive.json").read_text())
    (recorded,) = description["backup"]["encryption"]["kms"]
    assert recorded.startswith(f"aws:///{key.key_id}?AUTH=specified&AWS_ACCESS_KEY_ID=redacted"
                               "&AWS_SECRET_ACCESS_KEY=redacted&REGION=us-east-1")
    restore = (bundle / "RESTORE.md").read_text()
    assert f"WITH kms = '{recorded}';" in restore
    assert "replace each `redacted`" in restore
    assert_no_secret([], tree(bundle), KMS_SECRET.encode())
    # The schema itself refuses a KMS URI with a credential, and still admits older bundles.
    leaked = json.loads(json.dumps(description))
    leaked["backup"]["encryption"]["kms"] = [key.uri(secret=KMS_SECRET)]
    assert any("kms/0" in problem for problem in schema_problems(leaked))
    del leaked["backup"]["encryption"]
    assert schema_problems(leaked) == []
    checked = run_cli(capsys, "verify", str(bundle), "--decrypt-check", "--kms", f"@{uri_file}",
                      "--json")
    assert checked.code == 0, checked.out
    assert checked.json()["decrypt_checked"] == 4  # manifest, 2 SSTs, statistics
    assert KMS_SECRET not in checked.out + checked.err


def test_kms_key_that_does_not_match_is_exit_2(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, s3_env: MotoS3) -> None:
    key, other = create_key(s3_env), create_key(s3_env)
    path = encrypted_backup(tmp_path, with_kms(s3_env, key))
    result = run_cli(capsys, "inspect", str(path), "--kms", other.implicit_uri())
    assert result.code == 2
    assert "no ENCRYPTION-INFO entry" in result.err
    assert result.err.count("\n") == 1


def test_kms_unreachable_is_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   s3_env: MotoS3) -> None:
    key = create_key(s3_env)
    path = encrypted_backup(tmp_path, with_kms(s3_env, key))
    closed = KmsKey(key.key_id, key.arn, "http://127.0.0.1:9")  # discard port: refused
    result = run_cli(capsys, "inspect", str(path), "--kms", closed.implicit_uri()
                     + f"&AWS_ENDPOINT={closed.endpoint_url}")
    assert result.code == 3
    assert "cannot be reached" in result.err


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_s3_source_and_bundle_with_kms(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       mirror: MirrorServer, s3_env: MotoS3, fmt: str) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64"])
    key = create_key(s3_env)
    source = upload(s3_env, encrypted_backup(tmp_path, with_kms(s3_env, key)), "backups/enc")
    bucket = s3_env.bucket()
    uri_file = tmp_path / "secrets" / "kms"
    write(uri_file, key.uri(secret=KMS_SECRET).encode())
    result = run_cli(capsys, "archive", source, "--dest", f"s3://{bucket}/archive", "--mirror",
                     mirror.url, "--format", fmt, "--kms", f"@{uri_file}", "--json")
    assert result.code == 0, result.err
    assert result.json()["version"] == RELEASE
    checked = run_cli(capsys, "verify", str(result.json()["bundle"]), "--decrypt-check",
                      "--kms", key.implicit_uri(), "--json")
    assert checked.code == 0, checked.out
    assert checked.json()["decrypt_checked"] == 4
    for name, content in s3_env.object_bytes(bucket):
        assert KMS_SECRET.encode() not in content, name


# --- verify --decrypt-check ---------------------------------------------------------------------


@pytest.fixture
def damaged_before_archiving(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             mirror: MirrorServer, passphrase_file: Path) -> Path:
    """A bundle of a backup one of whose SSTs was damaged before it was archived: the bundle's
    own digests vouch for the damaged bytes."""
    publish(mirror.root, RELEASE, ["linux-amd64"])
    path = encrypted_backup(tmp_path)
    xor_byte(path / "data" / "800001.sst", 30)
    done = archive(capsys, path, tmp_path / "bundles", mirror, "--encryption-passphrase-file",
                   str(passphrase_file), "--format", "tar")
    return Path(str(done["bundle"]))


def test_decrypt_check_finds_what_digests_cannot(
    capsys: pytest.CaptureFixture[str], damaged_before_archiving: Path, passphrase_file: Path,
) -> None:
    plain = run_cli(capsys, "verify", str(damaged_before_archiving), "--json")
    assert plain.code == 0
    checked = run_cli(capsys, "verify", str(damaged_before_archiving), "--decrypt-check",
                      "--encryption-passphrase-file", str(passphrase_file), "--json")
    assert checked.code == 1
    report = checked.json()
    assert report["problems"] == [{
        "path": "data/backup/data/800001.sst", "kind": "decrypt",
        "detail": "chunk 0 fails AES-GCM authentication"}]
    assert report["decrypt_checked"] == 3
    text = run_cli(capsys, "verify", str(damaged_before_archiving), "--decrypt-check",
                   "--encryption-passphrase-file", str(passphrase_file))
    assert "decrypt: data/backup/data/800001.sst: chunk 0 fails AES-GCM" in text.out


def test_decrypt_check_with_a_wrong_passphrase_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damaged_before_archiving: Path,
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"nope\n")
    result = run_cli(capsys, "verify", str(damaged_before_archiving), "--decrypt-check",
                     "--encryption-passphrase-file", str(wrong))
    assert result.code == 2
    assert "wrong passphrase" in result.err


def test_decrypt_check_needs_a_key(capsys: pytest.CaptureFixture[str],
                                   damaged_before_archiving: Path, passphrase_file: Path) -> None:
    result = run_cli(capsys, "verify", str(damaged_before_archiving), "--decrypt-check")
    assert result.code == 2
    assert "needs the backup's key" in result.err
    alone = run_cli(capsys, "verify", str(damaged_before_archiving),
                    "--encryption-passphrase-file", str(passphrase_file))
    assert alone.code == 2
    assert "for --decrypt-check" in alone.err
    fast = run_cli(capsys, "verify", str(damaged_before_archiving), "--fast", "--decrypt-check",
                   "--encryption-passphrase-file", str(passphrase_file))
    assert fast.code == 2


def test_decrypt_check_of_a_collection_with_incrementals(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    passphrase_file: Path,
) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64"])
    root = tmp_path / "collection"
    subdir = "2023/06/02-093257.93"
    write_backup(root / subdir, MANIFEST, encrypt=True)
    write(root / "LATEST", f"/{subdir}".encode())
    for inc in ("20230602/113257.93", "20230602/133257.93"):
        write_backup(root / "incrementals" / subdir / inc,
                     dataclasses.replace(MANIFEST, start_time=T0), encrypt=True,
                     encryption_info=False, ssts=1)
    done = archive(capsys, root, tmp_path / "bundles", mirror, "--with-incrementals",
                   "--encryption-passphrase-file", str(passphrase_file))
    bundle = Path(str(done["bundle"]))
    restore = (bundle / "RESTORE.md").read_text()
    assert (f"RESTORE FROM '/{subdir}' IN 'nodelocal://1/backup' WITH encryption_passphrase = "
            "'<your passphrase>';") in restore
    checked = run_cli(capsys, "verify", str(bundle), "--decrypt-check",
                      "--encryption-passphrase-file", str(passphrase_file), "--json")
    assert checked.code == 0, checked.out
    # 4 in the full backup, 3 in each incremental.
    assert checked.json()["decrypt_checked"] == 10


# --- the process list -----------------------------------------------------------------------------


def watch_process_list(args: list[str], env: dict[str, str], tmp_path: Path
                       ) -> tuple[int, bytes, list[str]]:
    """Run the CLI as a process and take the machine's process list until it exits."""
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "crdb_archive.cli", *args],
                                   stdout=out, stderr=err, env=env)
        seen = []
        try:
            while process.poll() is None:
                seen.append(subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                                           text=True, check=True).stdout)
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=120)
    return process.returncode, out_path.read_bytes() + err_path.read_bytes(), seen


@pytest.mark.parametrize("how", ["kms", "passphrase-file", "passphrase-environment"])
def test_no_secret_in_the_process_list(tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
                                       passphrase_file: Path, how: str) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64"])
    env = dict(os.environ)
    args = ["archive", "--dest", str(tmp_path / "bundles"), "--mirror", mirror.url, "--json"]
    if how == "kms":
        key = create_key(s3_env)
        path = encrypted_backup(tmp_path, with_kms(s3_env, key))
        uri_file = tmp_path / "secrets" / "kms"
        write(uri_file, key.uri(secret=KMS_SECRET).encode())
        args += ["--kms", f"@{uri_file}"]
    else:
        path = encrypted_backup(tmp_path)
        if how == "passphrase-file":
            args += ["--encryption-passphrase-file", str(passphrase_file)]
        else:
            env[PASSPHRASE_ENV] = PASSPHRASE.decode()
    code, output, seen = watch_process_list([*args, str(path)], env, tmp_path)
    assert code == 0, output
    assert any(str(path) in listing for listing in seen)  # the process was seen
    for secret in (KMS_SECRET, PASSPHRASE.decode()):
        assert all(secret not in listing for listing in seen)
        assert secret.encode() not in output

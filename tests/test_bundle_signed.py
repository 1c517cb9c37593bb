"""Signed bundles against OpenSSH and bagit-python: written by `archive --sign-key`, checked by
`ssh-keygen -Y verify` with RESTORE.md's own command, and by `verify --allowed-signers`; a
signature made by `ssh-keygen -Y sign` is accepted; a consistent forgery passes every check
that has no trust anchor and fails both signature checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import bagit
import pytest

from crdb_archive.archive import ArchiveRequest, archive_backup
from crdb_archive.bundle.signature import load_signing_key
from support.bundles import era_with_binaries, make_bundle, run_cli, tree
from support.forge import forge_archive
from support.mirror import MirrorServer
from support.s3 import MotoS3
from support.ssh import Key, allowed_file, make_key, ssh_sign, ssh_verify

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                reason="ssh-keygen is the independent checker")

SIG = "tagmanifest-sha256.txt.sig"


@pytest.fixture
def key(tmp_path: Path) -> Key:
    (tmp_path / "keys").mkdir()
    return make_key(tmp_path / "keys", "archiver")


@pytest.fixture
def allowed(tmp_path: Path, key: Key) -> Path:
    return allowed_file(tmp_path / "keys", f"archive {key.public_key}")


def bag_info(bundle: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (bundle / "bag-info.txt").read_text()
                .splitlines())


def restore_md_command(bundle: Path) -> str:
    """The ssh-keygen line RESTORE.md gives, exactly as written there."""
    lines = [line for line in (bundle / "RESTORE.md").read_text().splitlines()
             if line.startswith("ssh-keygen -Y verify")]
    assert len(lines) == 1, lines
    return lines[0]


def run_restore_md_command(bundle: Path, allowed: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(allowed, bundle.parent / "allowed_signers")
    command = restore_md_command(bundle).replace("-f allowed_signers",
                                                 "-f ../allowed_signers")
    return subprocess.run(["sh", "-c", command], cwd=bundle, capture_output=True, text=True,
                          check=False)


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(capsys, "verify", *args, "--json")
    assert "Traceback" not in result.err
    return result.code, json.loads(result.out)


def test_signed_bundle_is_checked_by_openssh_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, sign_key=key.private)
    assert bag_info(bundle)["Bundle-Signing-Key"] == key.fingerprint
    assert key.fingerprint in (bundle / "RESTORE.md").read_text()
    # The signature is a tag file outside the tag manifest, which lists the other seven.
    assert SIG not in (bundle / "tagmanifest-sha256.txt").read_text()
    assert len((bundle / "tagmanifest-sha256.txt").read_text().splitlines()) == 7

    checked = run_restore_md_command(bundle, allowed)
    assert checked.returncode == 0, checked.stderr
    assert 'Good "crdb-archive" signature for archive' in checked.stdout + checked.stderr
    # bagit-python accepts the extra top-level file.
    bagit.Bag(str(bundle)).validate()

    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 0, report
    assert report["signature"] == {"present": True, "fingerprint": key.fingerprint,
                                   "signing_key": key.fingerprint, "checked": True,
                                   "valid": True, "principals": ["archive"]}
    text = run_cli(capsys, "verify", str(bundle))
    assert text.code == 0
    assert f"signature: present by {key.fingerprint}, not checked" in text.out


def test_signed_tar_has_the_signature_after_the_tag_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, fmt="tar", sign_key=key.private)
    with tarfile.open(bundle) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        tar.extractall(tmp_path / "out", filter="data")
    assert names[-2:] == ["tagmanifest-sha256.txt", SIG]
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 0, report
    assert report["signature"]["valid"] is True
    unpacked = tmp_path / "out" / bundle.name.removesuffix(".tar")
    checked = run_restore_md_command(unpacked, allowed)
    assert checked.returncode == 0, checked.stderr
    bagit.Bag(str(unpacked)).validate()


def test_a_signature_made_by_ssh_keygen_is_accepted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    signed = make_bundle(tmp_path / "a", sign_key=key.private)
    ssh_sign(key, signed / "tagmanifest-sha256.txt")
    code, report = verify(capsys, str(signed), "--allowed-signers", str(allowed))
    assert code == 0, report
    assert report["signature"]["fingerprint"] == key.fingerprint
    # A bundle written unsigned, signed afterwards with OpenSSH alone: bag-info.txt names no
    # key, and the signature is what counts.
    unsigned = make_bundle(tmp_path / "b")
    assert "Bundle-Signing-Key" not in bag_info(unsigned)
    ssh_sign(key, unsigned / "tagmanifest-sha256.txt")
    code, report = verify(capsys, str(unsigned), "--allowed-signers", str(allowed))
    assert code == 0, report
    assert report["signature"]["signing_key"] is None


def test_a_consistent_forgery_fails_only_the_signature_checks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, sign_key=key.private)
    forge_archive(bundle, b"#!/bin/sh\necho pwned\n")
    # Every record agrees with the forged payload: BagIt and the plain verification pass.
    bagit.Bag(str(bundle)).validate()
    plain = run_cli(capsys, "verify", str(bundle))
    assert plain.code == 0, plain.out
    assert "not checked (give --allowed-signers to check it)" in plain.out
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 1
    assert [(p["kind"], p["path"]) for p in report["problems"]] == [("signature", SIG)]
    assert "changed after signing" in report["problems"][0]["detail"]
    assert report["signature"]["valid"] is False
    assert ssh_verify(allowed, "archive", bundle / SIG,
                      (bundle / "tagmanifest-sha256.txt").read_bytes()).returncode != 0
    assert run_restore_md_command(bundle, allowed).returncode != 0


def test_signature_problems_with_allowed_signers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, sign_key=key.private)
    other = make_key(tmp_path / "keys", "stranger")
    strangers = allowed_file(tmp_path / "keys", f"archive {other.public_key}",
                             name="strangers")
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(strangers))
    assert code == 1
    assert report["problems"][0]["kind"] == "signature"
    assert "does not allow" in report["problems"][0]["detail"]

    signature = (bundle / SIG).read_bytes()
    (bundle / SIG).write_bytes(signature[:40] + b"!!" + signature[42:])
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 1
    assert [p["kind"] for p in report["problems"]] == ["signature"]
    # Without allowed signers a malformed signature is reported, never a problem.
    code, report = verify(capsys, str(bundle))
    assert code == 0
    assert report["signature"]["present"] is True
    assert report["signature"]["checked"] is False

    (bundle / SIG).unlink()
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 1
    assert report["problems"][0]["path"] == SIG
    assert f"although bag-info.txt names {key.fingerprint}" in report["problems"][0]["detail"]
    text = run_cli(capsys, "verify", str(bundle), "--allowed-signers", str(allowed))
    assert "NOT TRUSTED" in text.out

    unsigned = make_bundle(tmp_path / "plain")
    code, report = verify(capsys, str(unsigned), "--allowed-signers", str(allowed))
    assert code == 1
    assert report["problems"][0]["detail"].startswith("the bundle is not signed")


def test_signed_by_another_key_than_bag_info_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, sign_key=key.private)
    other = make_key(tmp_path / "keys", "countersigner")
    ssh_sign(other, bundle / "tagmanifest-sha256.txt")
    both = allowed_file(tmp_path / "keys", f"archive {key.public_key}",
                        f"archive {other.public_key}", name="both")
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(both))
    assert code == 1
    assert "names the signing key" in report["problems"][0]["detail"]


@pytest.mark.parametrize("case", ["passphrase", "ecdsa", "absent", "garbage"])
def test_an_unusable_signing_key_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    monkeypatch: pytest.MonkeyPatch, case: str,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v22.2")
    keys = tmp_path / "keys"
    keys.mkdir()
    if case == "passphrase":
        path = make_key(keys, "locked", passphrase="correct horse battery").private
    elif case == "ecdsa":
        path = make_key(keys, "ecdsa", kind="ecdsa").private
    elif case == "garbage":
        path = keys / "garbage"
        path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n")
    else:
        path = keys / "absent"
    dest = tmp_path / "bundles"
    # The path comes from the environment, as a scheduled job would give it.
    monkeypatch.setenv("CRDB_ARCHIVE_SIGN_KEY", str(path))
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                     mirror.url, "--json")
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "correct horse" not in result.err + result.out
    assert "c2VjcmV0" not in result.err + result.out
    assert not dest.exists() or tree(dest) == {}


def test_a_bundle_in_object_storage_is_never_visible_unsigned(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch,
    key: Key, allowed: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v22.2")
    bucket = s3_env.bucket()
    seen: list[list[str]] = []

    def at_publication(action: str) -> None:
        # Just before the tag manifest makes the bundle complete: the signature is there.
        if action.startswith("publishing"):
            seen.append([k for k in s3_env.all_keys(bucket)
                         if k.endswith(("tagmanifest-sha256.txt", SIG))])

    result = archive_backup(ArchiveRequest(
        source=str(era.path), dest=f"s3://{bucket}/archive", mirror=mirror.url,
        sign_key=load_signing_key(key.private)), guard=at_publication)
    assert seen == [[f"archive/{result.name}/{SIG}"]]
    code, report = verify(capsys, result.bundle, "--allowed-signers", str(allowed))
    assert code == 0, report
    assert report["signature"]["valid"] is True


def test_export_bundles_are_signed_the_same_way(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    from support.export_demo import SCHEMA_SQL, write_shop_changefeed  # noqa: PLC0415

    write_shop_changefeed(tmp_path / "sink")
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA_SQL)
    result = run_cli(capsys, "archive", str(tmp_path / "sink"), "--dest",
                     str(tmp_path / "bundles"), "--schema", str(schema), "--sign-key",
                     str(key.private), "--json")
    assert result.code == 0, result.err
    bundle = Path(str(result.json()["bundle"]))
    assert bag_info(bundle)["Bundle-Signing-Key"] == key.fingerprint
    checked = run_restore_md_command(bundle, allowed)
    assert checked.returncode == 0, checked.stderr
    code, report = verify(capsys, str(bundle), "--allowed-signers", str(allowed))
    assert code == 0, report


def test_rerun_with_a_key_leaves_an_unsigned_bundle_as_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    monkeypatch: pytest.MonkeyPatch, key: Key,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v22.2")
    dest = tmp_path / "bundles"
    first = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                    mirror.url, "--json")
    assert first.code == 0, first.err
    before = tree(dest)
    again = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                    mirror.url, "--sign-key", str(key.private), "--json")
    assert again.code == 0, again.err
    assert tree(dest) == before
    warnings = again.json()["warnings"]
    assert isinstance(warnings, list)
    assert any(re.search(r"is not signed, not by SHA256:", w) for w in warnings)


def test_binary_runs_the_version_check_only_for_a_trusted_signature(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    bundle = make_bundle(tmp_path, sign_key=key.private)
    out = tmp_path / "restore"
    done = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                   "linux-amd64", "--allowed-signers", str(allowed), "--json")
    assert done.code == 0, done.err
    payload = done.json()
    check = payload["version_check"]
    assert isinstance(check, dict)
    assert (check["checked"], check["matches"], check["build_tag"]) == (True, True, "v22.2.17")
    signature = payload["signature"]
    assert isinstance(signature, dict)
    assert signature["valid"] is True
    # Without --allowed-signers the binary is still never run.
    plain = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                    "linux-amd64", "--replace", "--json")
    assert plain.code == 0, plain.err
    unchecked = plain.json()["version_check"]
    assert isinstance(unchecked, dict)
    assert unchecked["checked"] is False


def test_binary_refuses_a_forged_bundle_before_writing_or_running_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key, allowed: Path,
) -> None:
    from support.release_archives import build_archive  # noqa: PLC0415

    bundle = make_bundle(tmp_path, sign_key=key.private)
    marker = tmp_path / "ran"
    (tmp_path / "evil").mkdir()
    evil = build_archive(tmp_path / "evil", "v22.2.17", "linux-amd64", marker=marker)
    forge_archive(bundle, evil.archive.read_bytes())
    out = tmp_path / "restore"
    out.mkdir()
    done = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                   "linux-amd64", "--allowed-signers", str(allowed))
    assert done.code == 1, done.err
    assert "is not signed by a key" in done.err
    assert "changed after signing" in done.err
    assert list(out.iterdir()) == []
    assert not marker.exists()
    unsigned = make_bundle(tmp_path / "plain")
    refused = run_cli(capsys, "binary", str(unsigned), "--to", str(out), "--platform",
                      "linux-amd64", "--allowed-signers", str(allowed))
    assert refused.code == 1
    assert "the bundle is not signed" in refused.err
    assert list(out.iterdir()) == []

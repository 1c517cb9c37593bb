"""Inspecting encrypted backups with a key: passphrase (format versions 1 and 2) and AWS KMS
(moto's KMS over HTTP), wrong keys, damage and truncation told apart."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from crdb_archive.backup import inspect_backup
from crdb_archive.backup.keys import EncryptionKeys
from crdb_archive.errors import (
    DamagedEncryptionInfo,
    DamagedManifest,
    NeedsRestoreFromColdStorage,
    WrongEncryptionKey,
)
from crdb_archive.storage.kms import parse_kms_uri
from support.backups import (
    T0,
    Manifest,
    checksum,
    full_subdir,
    incremental_name,
    upload,
    write,
    write_backup,
    write_latest,
)
from support.encryption import PASSPHRASE, SEALED, Encrypting, cut_after_chunks, with_passphrase
from support.kms import KmsKey, create_key, with_kms
from support.s3 import MotoS3

KEYS = EncryptionKeys(passphrase=PASSPHRASE, passphrase_source="test")
MANIFEST = Manifest(end_time=T0, build_tag="v23.1.11")


def kms_keys(*uris: str) -> EncryptionKeys:
    return EncryptionKeys(kms=tuple(parse_kms_uri(uri) for uri in uris))


def backup(tmp_path: Path, sealing: Encrypting | bool = True, **options: object) -> Path:
    path = tmp_path / "backup"
    write_backup(path, MANIFEST, encrypt=sealing, **options)  # type: ignore[arg-type]
    return path


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("version", [1, 2])
def test_passphrase_reads_the_version(tmp_path: Path, version: int) -> None:
    with inspect_backup(backup(tmp_path, with_passphrase(version=version)), keys=KEYS) as info:
        assert info.manifest.build_tag == "v23.1.11"
        assert info.manifest.encrypted
        assert info.manifest.decrypted
        assert info.manifest.checksum_verified
        assert info.major_version == "v23.1"
        assert info.manifest.end_time == T0
        report = info.to_json()
    assert report["encryption"] == {"mode": "passphrase", "decrypted": True, "kms": [],
                                    "encryption_info_files": ["ENCRYPTION-INFO"]}
    assert not any("encrypted" in w for w in info.warnings)


def test_a_manifest_of_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    stored = write_backup(path, dataclasses.replace(MANIFEST, padding=300_000), encrypt=True)
    assert len(stored) > 4 * SEALED
    with inspect_backup(path, keys=KEYS) as info:
        assert info.manifest.build_tag == "v23.1.11"
        assert info.manifest.cluster_id is not None


@pytest.mark.parametrize("names", [("BACKUP_METADATA",), ("BACKUP_MANIFEST", "BACKUP_METADATA")])
def test_backup_metadata(tmp_path: Path, names: tuple[str, ...]) -> None:
    with inspect_backup(backup(tmp_path, names=names), keys=KEYS) as info:
        assert info.manifest.file == names[0]
        assert info.manifest.build_tag == "v23.1.11"


def test_a_collection_with_incrementals(tmp_path: Path) -> None:
    root = tmp_path / "collection"
    manifest = Manifest(end_time=T0, build_tag="v24.3.1", cluster_version=(24, 3, 0, 0))
    incrementals = []
    for day in (1, 8):
        when = dt.datetime(2024, 12, day, tzinfo=dt.UTC)
        subdir = full_subdir(when)
        write_backup(root / subdir, dataclasses.replace(manifest, end_time=when), encrypt=True)
        write_latest(root, subdir, at=when, root_file=False, history=True)
    for hours in (6, 12):
        inc = when + dt.timedelta(hours=hours)
        rel = f"incrementals/{subdir}/{incremental_name(inc)}"
        # An incremental backup reads the key of its full backup's ENCRYPTION-INFO.
        write_backup(root / rel, dataclasses.replace(manifest, start_time=when, end_time=inc),
                     encrypt=True, encryption_info=False, ssts=1)
        incrementals.append(rel)
    with inspect_backup(root, keys=KEYS) as info:
        assert (info.kind, info.subdir) == ("collection", subdir)
        assert info.manifest.build_tag == "v24.3.1"
        assert info.manifest.end_time == when
        assert info.incrementals == incrementals
        assert info.encryption.info_files == (f"{subdir}/ENCRYPTION-INFO",)


def test_without_a_key_the_mode_is_still_known(tmp_path: Path) -> None:
    with inspect_backup(backup(tmp_path)) as info:
        assert info.manifest.encrypted
        assert not info.manifest.decrypted
        assert info.manifest.build_tag is None
        assert info.major_version is None
        assert info.encryption.mode == "passphrase"
        assert not info.encryption.decrypted
        assert any("--encryption-passphrase-file" in w for w in info.warnings)


def test_a_key_for_a_backup_that_is_not_encrypted(tmp_path: Path) -> None:
    with inspect_backup(backup(tmp_path, False), keys=KEYS) as info:
        assert info.manifest.build_tag == "v23.1.11"
        assert info.encryption.mode == "none"
        assert any("not encrypted" in w for w in info.warnings)


def test_a_wrong_passphrase(tmp_path: Path) -> None:
    wrong = EncryptionKeys(passphrase=b"not the passphrase")
    with pytest.raises(WrongEncryptionKey, match="wrong passphrase") as error:
        inspect_backup(backup(tmp_path), keys=wrong)
    assert "intact" in str(error.value)
    assert "not the passphrase" not in str(error.value)


def test_a_wrong_passphrase_without_a_checksum(tmp_path: Path) -> None:
    wrong = EncryptionKeys(passphrase=b"not the passphrase")
    with pytest.raises(WrongEncryptionKey, match="no -CHECKSUM"):
        inspect_backup(backup(tmp_path, with_checksum=False), keys=wrong)


def test_a_wrong_passphrase_version_one(tmp_path: Path) -> None:
    wrong = EncryptionKeys(passphrase=b"not the passphrase")
    with pytest.raises(WrongEncryptionKey):
        inspect_backup(backup(tmp_path, with_passphrase(version=1)), keys=wrong)


def test_damage_fails_the_checksum_before_the_key_is_blamed(tmp_path: Path) -> None:
    path = backup(tmp_path)
    flip(path / "BACKUP_MANIFEST", 40)
    with pytest.raises(DamagedManifest, match="does not match BACKUP_MANIFEST-CHECKSUM"):
        inspect_backup(path, keys=KEYS)


def test_damage_behind_a_recomputed_checksum(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    write_backup(path, dataclasses.replace(MANIFEST, padding=200_000), encrypt=True)
    manifest = path / "BACKUP_MANIFEST"
    flip(manifest, 20 + 2 * SEALED + 5)
    write(path / "BACKUP_MANIFEST-CHECKSUM", checksum(manifest.read_bytes()))
    with pytest.raises(DamagedManifest, match="chunk 2 fails AES-GCM authentication"):
        inspect_backup(path, keys=KEYS)


def test_cut_at_a_chunk_boundary_with_a_recomputed_checksum(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    write_backup(path, dataclasses.replace(MANIFEST, padding=200_000), encrypt=True)
    manifest = path / "BACKUP_MANIFEST"
    cut = cut_after_chunks(manifest.read_bytes(), 2)
    manifest.write_bytes(cut)
    write(path / "BACKUP_MANIFEST-CHECKSUM", checksum(cut))
    with pytest.raises(DamagedManifest, match="chunk boundary"):
        inspect_backup(path, keys=KEYS)


def test_missing_encryption_info(tmp_path: Path) -> None:
    path = backup(tmp_path)
    (path / "ENCRYPTION-INFO").unlink()
    with pytest.raises(DamagedEncryptionInfo, match="no ENCRYPTION-INFO"):
        inspect_backup(path, keys=KEYS)
    with inspect_backup(path) as info:
        assert info.encryption.mode == "unknown"


def test_damaged_encryption_info(tmp_path: Path) -> None:
    path = backup(tmp_path)
    (path / "ENCRYPTION-INFO").write_bytes(b"\x12\x10abc")
    with pytest.raises(DamagedEncryptionInfo, match="cannot be decoded"):
        inspect_backup(path, keys=KEYS)
    with inspect_backup(path) as info:
        assert info.encryption.mode == "unknown"
        assert any("cannot be decoded" in w for w in info.warnings)


# --- AWS KMS (moto) ---------------------------------------------------------------------------


@pytest.fixture
def kms_key(s3_env: MotoS3) -> KmsKey:
    return create_key(s3_env)


def test_kms_reads_the_version(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    path = backup(tmp_path, with_kms(s3_env, kms_key))
    with inspect_backup(path, keys=kms_keys(kms_key.uri())) as info:
        assert info.manifest.build_tag == "v23.1.11"
        report = info.to_json()
    encryption = report["encryption"]
    assert isinstance(encryption, dict)
    assert encryption["mode"] == "kms"
    (shown,) = encryption["kms"]
    assert shown.startswith(f"aws:///{kms_key.key_id}?AUTH=specified")
    assert "AWS_SECRET_ACCESS_KEY=redacted" in shown
    assert "testing" not in shown


def test_kms_with_implicit_credentials(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    # AUTH=implicit: the default chain's credentials, and AWS_ENDPOINT_URL for the endpoint.
    path = backup(tmp_path, with_kms(s3_env, kms_key, version=1))
    with inspect_backup(path, keys=kms_keys(kms_key.implicit_uri())) as info:
        assert info.manifest.build_tag == "v23.1.11"


def test_a_kms_key_that_does_not_match(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey
                                       ) -> None:
    other = create_key(s3_env)
    path = backup(tmp_path, with_kms(s3_env, kms_key))
    with pytest.raises(WrongEncryptionKey, match="no ENCRYPTION-INFO entry") as error:
        inspect_backup(path, keys=kms_keys(other.uri()))
    assert "testing" not in str(error.value)


def test_the_key_id_must_be_written_as_in_the_backup(tmp_path: Path, s3_env: MotoS3,
                                                     kms_key: KmsKey) -> None:
    path = backup(tmp_path, with_kms(s3_env, kms_key, named=kms_key.arn))
    with pytest.raises(WrongEncryptionKey, match="an ARN and a bare key id"):
        inspect_backup(path, keys=kms_keys(kms_key.uri()))
    with inspect_backup(path, keys=kms_keys(kms_key.uri(key=kms_key.arn))) as info:
        assert info.manifest.build_tag == "v23.1.11"


def test_alter_backup_add_new_kms(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    added = create_key(s3_env)
    unknown = create_key(s3_env)
    path = backup(tmp_path, with_kms(s3_env, kms_key, extra={"ENCRYPTION-INFO-2": [added]}))
    for uris in ([added.uri()], [kms_key.uri()], [unknown.uri(), added.uri()]):
        with inspect_backup(path, keys=kms_keys(*uris)) as info:
            assert info.manifest.build_tag == "v23.1.11"
            assert info.encryption.info_files == ("ENCRYPTION-INFO-2", "ENCRYPTION-INFO")


def test_the_other_kind_of_key(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    kms_backup = backup(tmp_path / "kms", with_kms(s3_env, kms_key))
    with pytest.raises(WrongEncryptionKey, match="encrypted with KMS"):
        inspect_backup(kms_backup, keys=KEYS)
    with pytest.raises(WrongEncryptionKey, match="encrypted with a passphrase"):
        inspect_backup(backup(tmp_path / "pass"), keys=kms_keys(kms_key.uri()))


def test_a_foreign_encryption_info(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    # KMS unwraps a genuine data key, but not the one this manifest was sealed with.
    path = backup(tmp_path, with_kms(s3_env, kms_key))
    foreign = with_kms(s3_env, kms_key)
    (path / "ENCRYPTION-INFO").write_bytes(foreign.infos["ENCRYPTION-INFO"])
    with pytest.raises(DamagedManifest, match="does not belong"):
        inspect_backup(path, keys=kms_keys(kms_key.uri()))


def test_kms_backup_in_s3(tmp_path: Path, s3_env: MotoS3, kms_key: KmsKey) -> None:
    path = backup(tmp_path, with_kms(s3_env, kms_key))
    uri = upload(s3_env, path, "enc/backup")
    with inspect_backup(uri, keys=kms_keys(kms_key.uri())) as info:
        assert info.manifest.build_tag == "v23.1.11"
        assert info.manifest.end_time == T0
        # ENCRYPTION-INFO is a file of the backup like any other: it is archived with it.
        assert "ENCRYPTION-INFO" in {f.path for f in info.files}


def test_encryption_info_in_cold_storage(tmp_path: Path, s3_env: MotoS3) -> None:
    path = backup(tmp_path)
    uri = upload(s3_env, path, "cold/backup",
                 storage_class=lambda rel: "GLACIER" if rel == "ENCRYPTION-INFO" else None)
    with inspect_backup(uri) as info:  # without a key, only how it is encrypted is unknown
        assert info.encryption.mode == "unknown"
        assert any("archive storage class" in w for w in info.warnings)
    with pytest.raises(NeedsRestoreFromColdStorage, match="ENCRYPTION-INFO"):
        inspect_backup(uri, keys=KEYS)

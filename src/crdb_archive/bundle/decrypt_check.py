"""``verify --decrypt-check``: authenticate every encrypted file of a backup bundle's payload.

The bundle's digests prove its files are as they were archived; this proves they are as
CockroachDB wrote them: every AES-GCM tag of every encrypted payload file (the files that
start with the ``encrypt`` preamble: manifests, SSTs, statistics, checkpoints) is checked,
and a chunked file must end in its short last chunk. The key is found as at archive time,
from the ENCRYPTION-INFO files in the bundle and the user's passphrase or KMS key. Files
stream through, never held whole.

A passphrase is only proven by a file it opens: when it opens none and the manifests'
digests hold, the passphrase is wrong (WrongEncryptionKey, exit 2), not the bundle damaged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from crdb_archive.backup.encryption import HEADER_BYTES, decrypt, looks_encrypted
from crdb_archive.backup.encryption_info import (
    ENCRYPTION_INFO,
    MAX_ENCRYPTION_INFO_BYTES,
    EncryptionInfo,
    newest_first,
    parse_encryption_info,
)
from crdb_archive.backup.keys import EncryptionKeys
from crdb_archive.backup.unlock import DataKey, resolve_data_key
from crdb_archive.bundle import layout
from crdb_archive.bundle.description import BackupDescription, BackupFacts, from_json
from crdb_archive.bundle.reader import BundleReader, Member
from crdb_archive.errors import (
    BadInput,
    DamagedEncryptedFile,
    DamagedEncryptionInfo,
    NotABundle,
    WrongEncryptionKey,
)
from crdb_archive.hashing import iter_chunks, parallel_in_batches
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.text import count

_THREADS = max(2, min(8, os.cpu_count() or 2))

# Reports a problem: (path, detail).
AddProblem = Callable[[str, str], None]


@dataclass(frozen=True)
class DecryptCheck:
    """How many encrypted payload files were authenticated, and how many failed."""

    encrypted: bool
    checked: int
    failed: int


def check_decryption(
    reader: BundleReader,
    description: dict[str, Any],  # as VerifyReport holds it, schema-checked
    keys: EncryptionKeys | None,
    add_problem: AddProblem,
    *,
    damaged: frozenset[str] = frozenset(),
    progress: ProgressCallback = no_progress,
) -> DecryptCheck:
    """Authenticate every encrypted payload file of the bundle ``reader`` describes.

    ``damaged`` are payload paths the digest checks already found damaged. Each failing file
    is reported through ``add_problem``. Raises BadInput when the backup is encrypted and no
    key is given, WrongEncryptionKey for a key that opens nothing, KeyServiceError when KMS
    fails, StorageError when the bundle cannot be read, DamagedBundle for a description the
    model refuses.
    """
    described = from_json(description)
    if not isinstance(described, BackupDescription) or not described.backup.encrypted:
        return DecryptCheck(False, 0, 0)
    backup = described.backup
    if keys is None or not keys.given:
        raise BadInput("--decrypt-check needs the backup's key: --encryption-passphrase-file, "
                       "$CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE or --kms")
    base = f"{layout.BACKUP_DIR}/{backup.subdir}" if backup.subdir else layout.BACKUP_DIR
    infos, missing = _encryption_infos(reader, base, backup)
    for path, detail in missing:
        add_problem(path, detail)
    try:
        data_key = resolve_data_key(infos, keys, reader.display)
    except DamagedEncryptionInfo as error:
        add_problem(base, f"the backup's key cannot be found: {error}")
        return DecryptCheck(True, 0, 0)
    return _check_files(reader, data_key, add_problem, damaged, progress)


def _encryption_infos(
    reader: BundleReader, base: str, backup: BackupFacts
) -> tuple[list[EncryptionInfo], list[tuple[str, str]]]:
    # The files recorded at archive time; an older bundle recorded none: the first one.
    recorded = backup.encryption.encryption_info_files if backup.encryption else ()
    names = newest_first(name.rsplit("/", 1)[-1] for name in recorded) or [ENCRYPTION_INFO]
    infos: list[EncryptionInfo] = []
    problems: list[tuple[str, str]] = []
    for name in names:
        path = f"{base}/{name}"
        try:
            with reader.open_member(path) as stream:
                data = stream.read(MAX_ENCRYPTION_INFO_BYTES + 1)
        except NotABundle:
            problems.append((path, "the backup's ENCRYPTION-INFO is absent: its key cannot be "
                                   "found"))
            continue
        try:
            infos.append(parse_encryption_info(data, path))
        except DamagedEncryptionInfo as error:
            problems.append((path, str(error)))
    return infos, problems


@dataclass(frozen=True)
class _Outcome:
    path: str
    encrypted: bool
    failure: DamagedEncryptedFile | None


def _check_files(
    reader: BundleReader, data_key: DataKey, add_problem: AddProblem,
    damaged: frozenset[str], progress: ProgressCallback,
) -> DecryptCheck:
    task = f"decrypt-check {reader.name}"
    done = 0

    def check(member: Member) -> _Outcome:
        nonlocal done
        outcome = _authenticate(member, data_key)
        done += member.size  # approximate under threads; progress only
        progress(ProgressEvent(task, done))
        return outcome

    backup_files = (m for m in reader.members() if m.path.startswith(layout.BACKUP_DIR + "/"))
    outcomes: Iterator[_Outcome]
    if reader.random_access:
        members = list(backup_files)
        outcomes = (o for _, o in parallel_in_batches(check, members, lambda m: m.size,
                                                      threads=_THREADS))
    else:
        outcomes = (check(m) for m in backup_files)
    results = list(outcomes)
    progress(ProgressEvent(task, done, done, finished=True))
    encrypted = [r for r in results if r.encrypted]
    failures = [r for r in encrypted if r.failure is not None]
    opened = len(encrypted) - len(failures)
    if (data_key.mode == "passphrase" and failures and opened == 0
            and all(r.failure is not None and r.failure.key_unproven for r in failures)
            and not any(r.path in damaged for r in failures)):
        raise WrongEncryptionKey(
            "the passphrase does not decrypt any of the "
            f"{count(len(failures), 'encrypted file')} of {reader.display}, whose digests "
            "hold: wrong passphrase")
    for result in failures:
        add_problem(result.path, str(result.failure).removeprefix(f"{result.path}: "))
    return DecryptCheck(True, opened, len(failures))


def _authenticate(member: Member, data_key: DataKey) -> _Outcome:
    with member.open() as stream:
        chunks = iter(iter_chunks(stream))
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= HEADER_BYTES:
                break
        if not looks_encrypted(head):
            return _Outcome(member.path, False, None)
        try:
            for _ in decrypt(_prefixed(head, chunks), data_key.key, name=member.path):
                pass
        except DamagedEncryptedFile as error:
            return _Outcome(member.path, True, error)
    return _Outcome(member.path, True, None)


def _prefixed(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest

"""Verify a bundle: BagIt complete and valid, plus what format 1 adds.

Every problem is collected and reported, not only the first. Problem kinds:

========== =================================================================================
missing    a file a manifest lists is absent, or one an export bundle's description names is
           not in the manifests
unexpected a file no manifest lists (or a symlink, device, stray tar member)
size       a file's size differs from payload-sizes.txt, or Payload-Oxum does not add up
digest     a payload file's digest differs from manifest-blake3.txt (or manifest-sha256.txt)
tag        a tag file is malformed or differs from tagmanifest-sha256.txt
schema     crdb-archive.json is not valid against its JSON schema
binary     a CockroachDB archive does not match the published SHA-256 recorded at archive time
           (backup bundles)
decrypt    an encrypted backup file fails AES-GCM authentication (``--decrypt-check``)
signature  with allowed signers (``--allowed-signers``): tagmanifest-sha256.txt.sig is missing,
           malformed, by a key they do not list, or does not match the tag manifest
========== =================================================================================

Without allowed signers, a signature is reported (present, and the key it names) but never
checked, so never a problem: see bundle/signature_check.py.

Beyond MAX_LISTED problems of one kind, the rest are counted in one closing problem: a
manifest of a million lines that lists nothing the bundle holds is one finding, not a million
lines of output and memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.payload_table import Algorithm, PayloadTable
from crdb_archive.bundle.reader import (
    BundleReader,
    DirReader,
    Member,
    Oddity,
    open_bundle,
    require_readable,
)
from crdb_archive.bundle.signature_check import SignatureStatus
from crdb_archive.bundle.tar_reader import TarReader
from crdb_archive.bundle.tarstream import TarDamaged
from crdb_archive.bundle.verify_checks import run_checks
from crdb_archive.errors import BadInput, CrdbArchiveError, NotABundle, StorageError
from crdb_archive.hashing import (
    Digests,
    DigestWriter,
    blake3_of_file,
    digest_mapped,
    digest_stream,
    iter_chunks,
    parallel_in_batches,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from crdb_archive.backup.keys import EncryptionKeys
    from crdb_archive.bundle.signature import AllowedSigners
    from crdb_archive.hashing_pool import HashedBatch, HashingPool, Strange
    from crdb_archive.worker_process import PoolUnavailable

Mode = Literal["fast", "blake3", "all"]
ProblemKind = Literal[
    "missing", "unexpected", "size", "digest", "tag", "schema", "binary", "decrypt",
    "signature",
]

MAX_LISTED = 1000

# Members of a tar smaller than this are hashed by the thread reading the tar.
_HASH_HERE_BELOW = 256 << 10
# Bytes of a mapped tar hashed between two releases of its pages.
_DROP_STEP = 8 << 20
# Bytes hashed between two progress events.
_PROGRESS_STEP = 1 << 20

# One hashing thread per core: more only contend for the interpreter lock on small files.
_HASH_THREADS = max(2, min(8, os.cpu_count() or 2))
# Reads from object storage wait on the network, not the processor: more of them at once.
_REMOTE_READS = 8
# From this many payload files, a directory here is hashed by worker processes; below, the
# start of the processes (tens of milliseconds) costs more than they save.
_POOL_FROM = 2048
# The shortest line of a BLAKE3 manifest: 64 hex digits, two spaces, "data/x", a line feed.
_SHORTEST_LINE = 73


@dataclass(frozen=True)
class Problem:
    path: str
    kind: ProblemKind
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    bundle: str
    form: Literal["dir", "tar"]
    mode: Mode
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    description: dict[str, Any] | None = None
    decrypted: int | None = None  # encrypted files authenticated by --decrypt-check
    signature: SignatureStatus | None = None
    _counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, kind: ProblemKind, detail: str) -> None:
        self._counts[kind] += 1
        if self._counts[kind] <= MAX_LISTED:
            self.problems.append(Problem(path, kind, detail))

    def finish(self) -> None:
        """Add one problem per kind that had more than MAX_LISTED, counting the rest."""
        for kind, count in sorted(self._counts.items()):
            if count > MAX_LISTED:
                self.problems.append(Problem(self.bundle, kind,  # type: ignore[arg-type]
                                             f"{count - MAX_LISTED} more problems of this "
                                             "kind are not listed"))
                self._counts[kind] = MAX_LISTED

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "ok": self.ok,
            "mode": self.mode,
            "problems": [p.to_json() for p in self.problems],
            "files": self.files,
            "bytes": self.bytes,
            **({} if self.decrypted is None else {"decrypt_checked": self.decrypted}),
            **({} if self.signature is None else {"signature": self.signature.to_json()}),
        }


@dataclass
class Seen:
    """What reading the bundle found: small tag files' bytes, every tag file's SHA-256, the
    manifests' lines and the payload's sizes and digests (in ``table``)."""

    tags: dict[str, bytes] = field(default_factory=dict)
    tag_sha256: dict[str, str] = field(default_factory=dict)
    oversized: set[str] = field(default_factory=set)
    manifest_errors: dict[str, list[str]] = field(default_factory=dict)
    table: PayloadTable = field(default_factory=PayloadTable)
    others: list[str] = field(default_factory=list)
    checksum_files: dict[str, bytes] = field(default_factory=dict)
    damage: TarDamaged | None = None
    # Called between two pieces of a manifest: other work that must not wait for the whole.
    between: Callable[[], None] = lambda: None

    @property
    def cut(self) -> bool:
        """Whether the tar broke before every member was read."""
        return self.damage is not None and not self.damage.complete


def verify_bundle(
    path: str | Path,
    *,
    fast: bool = False,
    all_digests: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback = no_progress,
    decrypt_check: bool = False,
    keys: EncryptionKeys | None = None,
    allowed: AllowedSigners | None = None,
) -> VerifyReport:
    """Verify the bundle at ``path`` (directory or .tar, local or s3://) and report every
    problem found; with ``decrypt_check``, also authenticate every encrypted backup file
    with ``keys`` (WrongEncryptionKey when they open none, KeyServiceError when KMS fails);
    with ``allowed``, require a valid signature by a key it lists.

    Raises NotABundle when ``path`` is not a bundle at all, NeedsRestoreFromColdStorage when
    objects it must read wait in an archive storage class, StorageError when it cannot be read.
    """
    reader = open_bundle(path, endpoint_url=endpoint_url)
    return verify_reader(reader, fast=fast, all_digests=all_digests, progress=progress,
                         decrypt_check=decrypt_check, keys=keys, allowed=allowed)


def verify_reader(
    reader: BundleReader,
    *,
    fast: bool = False,
    all_digests: bool = False,
    progress: ProgressCallback = no_progress,
    decrypt_check: bool = False,
    keys: EncryptionKeys | None = None,
    allowed: AllowedSigners | None = None,
) -> VerifyReport:
    """Verify an opened bundle; raises as :func:`verify_bundle`."""
    mode: Mode = "fast" if fast else ("all" if all_digests else "blake3")
    if decrypt_check and fast:
        raise BadInput("--decrypt-check reads every encrypted file; it cannot go with --fast")
    require_readable(reader, payload=mode != "fast")
    report = VerifyReport(reader.display, reader.form, mode)
    seen = _read(reader, report, mode, progress)
    if (seen.damage is None and not seen.tag_sha256 and not seen.oversized
            and not report.files):
        # Nothing of a bag at all; a damaged bundle (a tar cut short) still shows some of it.
        raise NotABundle(f"{reader.display} is not a bundle: it has no {layout.BAGIT_TXT}")
    run_checks(seen, report, full=mode != "fast", allowed=allowed)
    if decrypt_check and report.description is not None:
        _check_decryption(reader, report, report.description, keys, progress)
    report.finish()
    return report


def _check_decryption(
    reader: BundleReader, report: VerifyReport, description: dict[str, Any],
    keys: EncryptionKeys | None, progress: ProgressCallback,
) -> None:
    # Imported here: a plain verify starts without the backup and crypto machinery.
    from crdb_archive.bundle.decrypt_check import check_decryption  # noqa: PLC0415

    damaged = frozenset(p.path for p in report.problems)
    result = check_decryption(
        reader, description, keys, lambda path, detail: report.add(path, "decrypt", detail),
        damaged=damaged, progress=progress)
    report.decrypted = result.checked


# --- reading ------------------------------------------------------------------------------------


def _is_payload(path: str) -> bool:
    return path.startswith(layout.PAYLOAD_DIR + "/")


def _needs_sha256(path: str, mode: str) -> bool:
    # The binaries are checked against their published SHA-256 in every full verification.
    return mode == "all" or path.startswith(layout.BINARY_DIR + "/")


def _digest_local(path: str, local: str, mode: str) -> Digests:
    if not _needs_sha256(path, mode):
        return blake3_of_file(local)
    with open(local, "rb") as stream:  # noqa: PTH123 - a str path: no Path object per file
        return digest_stream(stream, size_hint=os.fstat(stream.fileno()).st_size)


def _digest_member(member: Member, mode: str, progress: _Counter) -> Digests:
    if member.local_path is not None and not _needs_sha256(member.path, mode):
        digests = blake3_of_file(member.local_path)
    else:
        writer = DigestWriter(sha256=_needs_sha256(member.path, mode), size_hint=member.size)
        with member.open() as stream:
            for chunk in iter_chunks(stream):
                writer.update(chunk)
        digests = writer.digests()
    progress.add(digests.size)
    return digests


_CHECKSUM_FILE_LIMIT = 4096


def _is_checksum_path(path: str) -> bool:
    return path.startswith(layout.BINARY_DIR + "/") and path.endswith(".sha256sum")


def _is_checksum_file(member: Member) -> bool:
    return _is_checksum_path(member.path) and member.size <= _CHECKSUM_FILE_LIMIT


def _digest_bytes(content: bytes) -> Digests:
    writer = DigestWriter(size_hint=len(content))
    writer.update(content)
    return writer.digests()


class _Counter:
    def __init__(self, task: str, progress: ProgressCallback) -> None:
        self._task = task
        self._progress = progress
        self._done = 0
        self._reported = 0
        self.total: int | None = None

    def add(self, count: int) -> None:
        self._done += count  # approximate under threads; progress only
        if self._done - self._reported >= _PROGRESS_STEP:
            # Not one event per file of 100k small ones: a display shows no more anyway.
            self._reported = self._done
            self._progress(ProgressEvent(self._task, self._done, self.total))

    def finish(self) -> None:
        self._progress(ProgressEvent(self._task, self._done, self.total, finished=True))


def _read(
    reader: BundleReader, report: VerifyReport, mode: str, progress: ProgressCallback
) -> Seen:
    seen = Seen()
    counter = _Counter(f"verify {reader.name}", progress)
    with _read_errors(reader, report, seen):
        if isinstance(reader, DirReader) and reader.local_root is not None and mode != "fast":
            _read_local_dir(reader, report, seen, mode, counter)
        elif isinstance(reader, TarReader) and mode != "fast":
            _read_tar(reader, report, seen, mode, counter)
        else:
            _read_members(reader, report, seen, mode, counter)
    counter.finish()
    for oddity in reader.oddities:
        report.add(oddity.path, "unexpected", oddity.detail)
    return seen


def _read_members(reader: BundleReader, report: VerifyReport, seen: Seen, mode: str,
                  counter: _Counter) -> None:
    """Every member in the reader's order; payload hashed on the way, or in parallel where
    members may be read in any order."""
    to_hash: list[Member] = []
    for member in reader.members():
        if not _is_payload(member.path):
            _read_tag(member, seen)
            continue
        _present(seen, report, member.path, member.size)
        if mode == "fast":
            continue
        if _is_checksum_file(member):
            _read_checksum_file(member, seen)
        elif reader.random_access:
            to_hash.append(member)
        else:
            seen.table.digested(member.path, _digest_member(member, mode, counter))
    if to_hash:
        counter.total = sum(m.size for m in to_hash)
        for member, digests in parallel_in_batches(
            lambda m: _digest_member(m, mode, counter), to_hash, lambda m: m.size,
            threads=_HASH_THREADS if to_hash[0].local_path else _REMOTE_READS,
        ):
            seen.table.digested(member.path, digests)


def _read_local_dir(reader: DirReader, report: VerifyReport, seen: Seen, mode: str,
                    counter: _Counter) -> None:
    """A directory here: hashed on every core while it is walked, each payload file opened
    once (its size and digest from the one visit). Many files go to worker processes, which
    walk and hash while the manifests are read here; a few go to threads here."""
    with _pool_for(str(reader.local_root), mode) as pool:
        if pool is not None:
            from crdb_archive.worker_process import PoolUnavailable  # noqa: PLC0415

            try:
                _read_with_processes(pool, reader, report, seen, counter)
            except PoolUnavailable:
                pass  # the tag files are read, nothing of the payload: threads here read it
            else:
                return
        else:
            _read_local_tags(reader, seen, counter)
    for (path, _), digests in parallel_in_batches(
        lambda item: _digest_local(item[0], item[1], mode),
        _local_payload(reader, report, seen, mode, counter), lambda item: 0,
        threads=_HASH_THREADS, batch_items=64,
    ):
        seen.table.record(path, digests.size, digests)
        report.files += 1
        report.bytes += digests.size
        counter.add(digests.size)


@contextlib.contextmanager
def _pool_for(root: str, mode: str) -> Iterator[HashingPool | None]:
    """Worker processes for a bundle whose BLAKE3 manifest lists many files, started before
    the manifests are read so that they hash while the manifests are read; None for a small
    bundle, or where processes cannot start (threads do the work then)."""
    try:
        listed = (Path(root) / layout.MANIFEST_BLAKE3).stat().st_size
    except OSError:
        listed = 0
    if listed < _POOL_FROM * _SHORTEST_LINE:
        yield None
        return
    # Imported here: a small bundle is hashed without it.
    from crdb_archive.hashing_pool import HashingPool  # noqa: PLC0415
    from crdb_archive.worker_process import PoolFailed  # noqa: PLC0415

    try:
        pool = HashingPool(root, layout.PAYLOAD_DIR, workers=_HASH_THREADS,
                           sha256_all=mode == "all", sha256_under=layout.BINARY_DIR)
    except PoolFailed:
        yield None
        return
    with pool:
        yield pool


def _read_with_processes(pool: HashingPool, reader: DirReader, report: VerifyReport,
                         seen: Seen, counter: _Counter) -> None:
    """The tag files read here while the workers hash, their answers stored as they come
    (between two pieces of a manifest, so that no worker waits long); then the rest. Raises
    PoolUnavailable when the workers did not start: the tag files are read then, and nothing
    of the payload is stored."""
    answers = _Answers(pool, reader, report, seen, counter)
    seen.between = answers.take_ready
    try:
        _read_local_tags(reader, seen, counter)
    finally:
        seen.between = lambda: None
    if answers.unavailable is not None:
        raise answers.unavailable
    answers.store(pool.answers())
    root = str(reader.local_root)
    for path in answers.checksums:
        # Their text, not only their digests: the published SHA-256 is read from them.
        member = reader.local_member(path, os.path.join(root, path))  # noqa: PTH118
        if member.size <= _CHECKSUM_FILE_LIMIT:
            _read_checksum_file(member, seen, digested=True)


class _Answers:
    """What the hashing workers found, stored in the table as it comes."""

    def __init__(self, pool: HashingPool, reader: DirReader, report: VerifyReport, seen: Seen,
                 counter: _Counter) -> None:
        self.pool = pool
        self.reader = reader
        self.report = report
        self.seen = seen
        self.counter = counter
        self.root = str(reader.local_root)
        self.checksums: list[str] = []  # published checksum files, to read once hashed
        self.unavailable: PoolUnavailable | None = None

    def take_ready(self) -> None:
        """Store what the workers have sent so far, without waiting for more."""
        from crdb_archive.worker_process import PoolUnavailable  # noqa: PLC0415

        if self.unavailable is not None:
            return
        try:
            self.store(self.pool.ready_answers())
        except PoolUnavailable as error:
            self.unavailable = error  # the tag files are still read to their ends

    def store(self, answers: Iterable[HashedBatch | Strange]) -> None:
        from crdb_archive.hashing_pool import HashedBatch  # noqa: PLC0415

        for answer in answers:
            if not isinstance(answer, HashedBatch):
                kind = "symbolic link" if answer.symlink else "special file"
                self.reader.oddities.append(Oddity(answer.path, f"{kind}, not a regular file"))
                continue
            failure = answer.first_failure(self.root)
            if failure is not None:
                raise failure
            self.seen.table.record_many(answer.paths, answer.sizes, answer.blake3,
                                        answer.sha256)
            total = sum(answer.sizes)
            self.report.files += len(answer.paths)
            self.report.bytes += total
            self.counter.add(total)
            if answer.sha256 is not None:
                self.checksums.extend(filter(_is_checksum_path, answer.paths))


def _read_local_tags(reader: DirReader, seen: Seen, counter: _Counter) -> None:
    """Every file outside the payload directory of a directory here."""
    for path, local in reader.local_files(skip=layout.PAYLOAD_DIR):
        _read_tag(reader.local_member(path, local), seen)
    # payload-sizes.txt gives the total to hash.
    counter.total = seen.table.listed_total()


def _local_payload(reader: DirReader, report: VerifyReport, seen: Seen, mode: str,
                   counter: _Counter) -> Iterator[tuple[str, str]]:
    """The payload files of a directory here to hash, as ``(path, path here)``; the small
    published checksum files are read on the way."""
    for path, local in reader.local_files(under=layout.PAYLOAD_DIR):
        if _is_checksum_path(path):
            _read_local_checksum(reader, report, seen, mode, counter, path, local)
        else:
            yield path, local


def _read_local_checksum(reader: DirReader, report: VerifyReport, seen: Seen, mode: str,
                         counter: _Counter, path: str, local: str) -> None:
    member = reader.local_member(path, local)
    _present(seen, report, path, member.size)
    if member.size <= _CHECKSUM_FILE_LIMIT:
        _read_checksum_file(member, seen)
        counter.add(member.size)
    else:
        seen.table.digested(path, _digest_member(member, mode, counter))


def _read_tar(reader: TarReader, report: VerifyReport, seen: Seen, mode: str,
              counter: _Counter) -> None:
    """A tar, read once, front to back; where it is a file here, the members' bytes are
    hashed in place (mapped) on other threads while the reading goes on."""
    with reader.mapped() as mapped:
        if mapped is None:
            _read_members(reader, report, seen, mode, counter)
            return

        release = _Release(mapped)

        def payload() -> Iterator[Member]:
            for member in reader.members():
                if not _is_payload(member.path):
                    _read_tag(member, seen)
                    continue
                _present(seen, report, member.path, member.size)
                if _is_checksum_file(member):
                    _read_checksum_file(member, seen)
                elif member.offset is None or member.offset + member.size > len(mapped):
                    # The tar is cut short in this member: reading it says where.
                    seen.table.digested(member.path, _digest_member(member, mode, counter))
                elif member.size < _HASH_HERE_BELOW:
                    # Handing a small member to a thread costs more than hashing it here.
                    seen.table.digested(member.path, digest_mapped(
                        mapped, member.offset, member.size,
                        sha256=_needs_sha256(member.path, mode)))
                    release.upto(member.offset + member.size)
                else:
                    yield member

        for member, digests in parallel_in_batches(
            lambda m: digest_mapped(mapped, m.offset or 0, m.size,
                                    sha256=_needs_sha256(m.path, mode)),
            payload(), lambda m: m.size, threads=_HASH_THREADS,
        ):
            seen.table.digested(member.path, digests)
            counter.add(digests.size)
            release.upto((member.offset or 0) + member.size)


class _Release:
    """Releases the pages of a mapped tar behind the hashing, a step at a time, so that
    resident memory does not grow with the tar. A page released while a thread still hashes
    it is read again from the page cache: slower, never wrong."""

    def __init__(self, mapped: mmap.mmap) -> None:
        self._mapped = mapped
        self._done = 0

    def upto(self, end: int) -> None:
        end -= end % mmap.PAGESIZE
        if end - self._done >= _DROP_STEP:
            self._mapped.madvise(mmap.MADV_DONTNEED, self._done, end - self._done)
            self._done = end


def _present(seen: Seen, report: VerifyReport, path: str, size: int) -> None:
    seen.table.present(path, size)
    report.files += 1
    report.bytes += size


def _read_tag(member: Member, seen: Seen) -> None:
    if member.path in tagfiles.STREAMED:
        _read_streamed(member, seen)
    elif member.path in tagfiles.READ_WHOLE:
        _read_whole(member, seen)
    else:
        seen.others.append(member.path)


def _read_checksum_file(member: Member, seen: Seen, *, digested: bool = False) -> None:
    """Keep a published checksum file's text; digest it too unless it is ``digested``
    already."""
    with member.open() as stream:
        content = stream.read()
    seen.checksum_files[member.path] = content
    if not digested:
        seen.table.digested(member.path, _digest_bytes(content))


def _read_streamed(member: Member, seen: Seen) -> None:
    """A manifest or payload-sizes.txt, line by line into the table, digested on the way."""
    name = member.path
    lines = tagfiles.LineReader(name)
    errors: list[str] = []
    algorithm: Algorithm = "sha256" if name == layout.MANIFEST_SHA256 else "blake3"
    with member.open() as stream:
        for batch in tagfiles.parse_entry_batches(name, lines.line_batches(stream), errors):
            if isinstance(batch.values, list):
                seen.table.sized_many(batch.paths, batch.values)
            else:
                seen.table.listed_many(algorithm, batch.paths, batch.values)
            seen.between()
    seen.tag_sha256[name] = lines.sha256
    seen.manifest_errors[name] = lines.errors + errors


def _read_whole(member: Member, seen: Seen) -> None:
    limit = tagfiles.limit_of(member.path)
    if member.size > limit:
        seen.oversized.add(member.path)
        return
    with member.open() as stream:
        content = stream.read(limit + 1)
    if len(content) > limit:
        seen.oversized.add(member.path)
        return
    seen.tags[member.path] = content
    seen.tag_sha256[member.path] = hashlib.sha256(content).hexdigest()


@contextlib.contextmanager
def _read_errors(reader: BundleReader, report: VerifyReport, seen: Seen) -> Iterator[None]:
    """A damaged tar is damage to report; other read failures are the world failing."""
    try:
        yield
    except TarDamaged as damage:
        seen.damage = damage
        report.add(damage.where, damage.kind, damage.detail)
    except CrdbArchiveError:
        raise
    except OSError as error:
        raise StorageError(f"cannot read {reader.display}: {error.strerror}") from error

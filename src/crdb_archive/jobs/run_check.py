"""The check a run makes of each bundle it writes or finds, and the fixity record it leaves.

A bundle found already there gets the quick check (tag files, presence and sizes). A bundle this
run has just written is checked whole: where it went to an object store, by the store's own
checksums of every object against what the upload computed (jobs/confirm.py), plus the tag
files of a directory bundle read back (they are small: their manifests, sizes and signature
are checked against the objects written); elsewhere (a local directory) by reading it back.
Either counts as the bundle's first verification and is recorded as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crdb_archive import text
from crdb_archive.bundle.tar_tags import check_tar_tags
from crdb_archive.errors import CrdbArchiveError, DamagedBundle, NeedsRestoreFromColdStorage
from crdb_archive.jobs.confirm import Confirmed, bundle_receipts, confirm_receipts
from crdb_archive.jobs.destination import Destination
from crdb_archive.jobs.fixity import (
    MAX_DETAIL,
    MAX_LISTED_PROBLEMS,
    record_of,
    write_record,
)
from crdb_archive.jobs.run_report import Reporter
from crdb_archive.jobs.spec import JobSpec
from crdb_archive.progress import ProgressCallback

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners
    from crdb_archive.bundle.signature_check import SignatureStatus
    from crdb_archive.bundle.verify import VerifyReport
    from crdb_archive.storage.receipts import Receipt

# Keys of objects read back that an event lists (a store that keeps no checksum at all has
# every object read back: the count says how many).
MAX_READ_BACK = 20
# The mode of the check (in its event and fixity record) that read no payload back.
STORE_CHECKSUMS = "store-checksums"


@dataclass(frozen=True)
class Uploaded:
    """What the archiving of a bundle says of its upload: the receipts of its objects (none
    where nothing needs confirming), where a tar's tag files start, what the payload held."""

    receipts: Sequence[Receipt]
    tags_at: int | None
    files: int
    bytes: int


@dataclass(frozen=True)
class Tags:
    """What reading back a new bundle's tag files found."""

    problems: list[str]
    files: int
    signature: SignatureStatus | None
    read: bool = True
    unread: str | None = None  # why they could not be read


class BundleCheck:
    """Checks bundles for one run, reporting through ``out``."""

    def __init__(self, out: Reporter, spec: JobSpec, progress: ProgressCallback) -> None:
        self.out = out
        self.spec = spec
        self.progress = progress

    def verify(self, destination: Destination, name: str, location: str, *,
               full: bool) -> bool:
        """A full check (reading every digest) or the quick one; whether the bundle is
        sound."""
        try:
            checked = destination.check(location, full=full, progress=self.progress,
                                        allowed=self.allowed() if full else None)
        except CrdbArchiveError as error:
            self.out.fail("verify", error, bundle=name)
            return False
        report = checked.report
        if full:
            # The check of what this run wrote counts as the bundle's first verification.
            self._record(destination, name, location, report, checked.limited)
        extra = {"limited": checked.limited} if checked.limited else {}
        ok = self._report(name, location, report.mode, [str(p) for p in report.problems],
                          **extra)
        if full and checked.limited:
            self.out.warn("cold_storage", checked.limited, bundle=name)
        return ok

    def written(self, destination: Destination, name: str, location: str,
                upload: Uploaded) -> bool:
        """The check of a bundle this run has just written; whether it is sound.

        Without receipts (a local directory, read back cheaply) it is the full check.
        """
        if not upload.receipts:
            return self.verify(destination, name, location, full=True)
        try:
            key = destination.key_of(location)
            tags = self._tags(destination, name, location, key, upload)
            confirmed = confirm_receipts(destination.storage,
                                         bundle_receipts(upload.receipts, key))
        except CrdbArchiveError as error:
            self.out.fail("verify", error, bundle=name)
            return False
        problems = [*tags.problems, *(f"digest: {k}: {detail}"
                                      for k, detail in confirmed.problems)]
        self._record_confirmed(destination, name, location, tags, confirmed, problems)
        return self._report(name, location, STORE_CHECKSUMS, problems,
                            **confirmation_fields(confirmed, tags))

    def _tags(self, destination: Destination, name: str, location: str, key: str,
              upload: Uploaded) -> Tags:
        """The tag files of a bundle just written, read back and checked: through the quick
        check of a directory, from where the writer put them in a tar."""
        if not key.endswith(".tar"):
            report = destination.check(location, full=False, progress=self.progress,
                                       allowed=self.allowed()).report
            return Tags([str(p) for p in report.problems], report.files, report.signature)
        if upload.tags_at is None:  # a tar written whole elsewhere: none to find
            return Tags([], upload.files, None, read=False)
        try:
            found = check_tar_tags(destination.storage, key, name, upload.tags_at,
                                   files=upload.files, size=upload.bytes,
                                   allowed=self.allowed())
        except NeedsRestoreFromColdStorage:
            # Nothing of a tar in an archive class can be read before a restore; its checksum
            # still confirms every byte, the tag files among them.
            return Tags([], upload.files, None, read=False,
                        unread=f"{location} is in an archive storage class: its tag files "
                        "cannot be read before a restore")
        return Tags(found.problems, upload.files, found.signature)

    def _report(self, name: str, location: str, mode: str, problems: list[str],
                **extra: Any) -> bool:
        ok = not problems
        self.out.emit("verify", bundle=name, location=location, ok=ok, mode=mode,
                      problems=problems, **extra)
        if not ok:
            self.out.fail("verify", DamagedBundle(
                f"bundle {location} failed verification ({text.count(len(problems), 'problem')}, "
                f"first: {problems[0]}); move it aside and run again"), bundle=name)
        return ok

    def allowed(self) -> AllowedSigners | None:
        """The keys a bundle must be signed by: [audit]'s allowed signers, else this job's own
        key (so a signature that does not verify is caught as it is written)."""
        if self.spec.audit is not None and self.spec.audit.allowed_signers is not None:
            return self.spec.audit.allowed_signers
        if self.spec.sign_key is None:
            return None
        from crdb_archive.bundle.signature import AllowedSigners, Signer  # noqa: PLC0415

        own = Signer((self.spec.name,), self.spec.sign_key.public_blob, None, None, None)
        return AllowedSigners((own,), f"the key of job {self.spec.name}")

    def _record(self, destination: Destination, name: str, location: str,
                report: VerifyReport, limited: str | None) -> None:
        try:
            key = destination.key_of(location)
            write_record(destination.storage, record_of(key, report, "run", limited=limited))
        except CrdbArchiveError as error:
            self.out.fail("fixity", error, bundle=name)

    def _record_confirmed(self, destination: Destination, name: str, location: str,
                          tags: Tags, confirmed: Confirmed, problems: list[str]) -> None:
        from crdb_archive.bundle.verify import VerifyReport  # noqa: PLC0415

        key = destination.key_of(location)
        report = VerifyReport(location, "tar" if key.endswith(".tar") else "dir", "fast",
                              files=tags.files, signature=tags.signature)
        record = dataclasses.replace(
            record_of(key, report, "run"), mode=STORE_CHECKSUMS,
            bytes_read=confirmed.bytes_read, result="ok" if not problems else "damaged",
            problems=len(problems), first_problems=[
                {"path": key, "kind": p.partition(":")[0], "detail": p[:MAX_DETAIL]}
                for p in problems[:MAX_LISTED_PROBLEMS]],
            note=confirmation_note(confirmed))
        try:
            write_record(destination.storage, record)
        except CrdbArchiveError as error:
            self.out.fail("fixity", error, bundle=name)


def confirmation_fields(confirmed: Confirmed, tags: Tags) -> dict[str, Any]:
    """The fields of a verify event that say how a written bundle was confirmed."""
    fields: dict[str, Any] = {
        "confirmed": STORE_CHECKSUMS, "objects": confirmed.objects,
        "by_store": confirmed.by_store, "read_back": confirmed.read_back[:MAX_READ_BACK],
        "bytes_read": confirmed.bytes_read, "tag_files_read": tags.read,
    }
    if tags.unread is not None:
        fields["tag_files_unread"] = tags.unread
    if confirmed.read_back:
        unreported = text.count(len(confirmed.read_back), "object")
        fields["note"] = (f"the store reported no checksum of {unreported} "
                          f"({confirmed.read_back[0]} first): read back whole "
                          f"({text.size(confirmed.bytes_read)})")
    return fields


def confirmation_note(confirmed: Confirmed) -> str:
    """What a fixity record says of a confirmation."""
    note = (f"{text.count(confirmed.by_store, 'object')} confirmed by the store's checksums of "
            "the upload")
    if confirmed.read_back:
        note += f", {text.count(len(confirmed.read_back), 'object')} read back whole"
    return note

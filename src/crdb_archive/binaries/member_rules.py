"""The rules a release archive's members must pass, whatever format carries them.

An official archive (DESIGN 2.2) is one top folder named like the archive, holding
``cockroach`` (``cockroach.exe`` on Windows) and, on some platforms, ``lib/libgeos*.so``: a
handful of members, the binary a few hundred MB. The rules follow from that, with headroom:
names stay inside the top folder, links stay inside the archive, at most :data:`MAX_MEMBERS`
members and :data:`MAX_TOTAL_BYTES` in all, sizes taken from the headers. They are applied
member by member as the archive streams by (members.py), then to the whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

# An official archive holds fewer than ten members (folders included); 64 leaves room for
# releases that ship more libraries, and stops a few-megabyte archive of 200,000 empty files.
MAX_MEMBERS = 64
# The largest official archives unpack to a few hundred MB; 2 GiB is headroom, and refuses an
# archive whose headers promise 10 GiB before anything is written.
MAX_TOTAL_BYTES = 2 << 30
MemberKind = Literal["dir", "file", "symlink", "hardlink"]
EXECUTABLES = ("cockroach", "cockroach.exe")
# Written by every extraction into the folder it creates (extract.py); an archive that holds
# one could pass itself off as an earlier extraction of something else.
EXTRACTION_MARKER = ".crdb-archive-extracted.json"

_DRIVE = re.compile(r"^[A-Za-z]:")

class ArchiveRefusal(Exception):
    """Why an archive is not an official release archive; ``unsafe`` when a member could
    escape its folder or exhaust the disk, rather than merely be wrong."""

    def __init__(self, reason: str, *, unsafe: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unsafe = unsafe


@dataclass(frozen=True)
class Member:
    """One member, as its header describes it."""

    path: PurePosixPath
    kind: MemberKind
    mode: int
    mtime: int
    size: int  # bytes of a file member, 0 for the others
    link: str | None  # a symlink's target, or the archive path a hard link repeats


@dataclass(frozen=True)
class ReleaseLayout:
    """What a release archive holds, once every rule has passed."""

    top: str  # the one top folder, named like the archive
    executable: str  # "cockroach" or "cockroach.exe", a regular file in the top folder
    members: tuple[Member, ...]
    sha256: str  # of the archive's bytes as read
    total_bytes: int  # what extracting it writes


def expected_top(file_name: str) -> str:
    """The top folder an official archive of this name holds; ArchiveRefusal for a name that
    is not a .tgz or .zip."""
    for suffix in (".tgz", ".zip"):
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name.removesuffix(suffix)
    raise ArchiveRefusal("is neither a .tgz nor a .zip release archive", unsafe=False)


def member_path(name: str) -> PurePosixPath:
    """``name`` as a relative path inside the archive; ArchiveRefusal if it could leave it."""
    reason = _unsafe_name(name)
    if reason is not None:
        raise ArchiveRefusal(f"member {name!r} {reason}", unsafe=True)
    return PurePosixPath(name)


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be a path inside the extraction directory, or None."""
    if not name or "\x00" in name or "\\" in name:
        return "is not a plain relative path"
    if name.startswith("/") or _DRIVE.match(name):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out with '..'"
    return None


def too_many(count: int) -> ArchiveRefusal:
    return ArchiveRefusal(f"holds {count} or more members; an official release archive holds "
                          f"a handful (at most {MAX_MEMBERS} are accepted)", unsafe=True)


@dataclass
class Rules:
    """The rules, applied member by member as they stream by, then to the whole."""

    top: str
    expect: tuple[Member, ...] | None
    members: list[Member] = field(default_factory=list)
    kinds: dict[PurePosixPath, MemberKind] = field(default_factory=dict)
    sizes: dict[PurePosixPath, int] = field(default_factory=dict)
    total: int = 0

    def admit(self, member: Member) -> None:
        """Refuse ``member`` unless it can be written safely after those before it."""
        if len(self.members) >= MAX_MEMBERS:
            raise too_many(MAX_MEMBERS + 1)
        if self.expect is not None and (len(self.members) >= len(self.expect)
                                        or self.expect[len(self.members)] != member):
            raise ArchiveRefusal("changed while it was being read", unsafe=True)
        shown = str(member.path)
        size = member.size
        if member.kind == "hardlink":
            link = member.link or ""
            reason = _unsafe_name(link)
            if reason is not None:
                raise ArchiveRefusal(f"hard link {shown!r} -> {link!r}: the target {reason}",
                                     unsafe=True)
            target = PurePosixPath(link)
            if self.kinds.get(target) != "file":
                raise ArchiveRefusal(f"hard link {shown!r} -> {link!r} does not repeat a file "
                                     "earlier in the archive", unsafe=True)
            size = self.sizes[target]  # extraction writes a copy
        if size > MAX_TOTAL_BYTES - self.total:
            raise ArchiveRefusal(
                f"member {shown!r} would bring what it unpacks to more than "
                f"{MAX_TOTAL_BYTES >> 20} MiB; an official release archive is a few hundred MB",
                unsafe=True)
        self.total += size
        if member.path != PurePosixPath("."):
            earlier = self.kinds.get(member.path)
            if earlier is not None and not (earlier == "dir" == member.kind):
                raise ArchiveRefusal(f"member {shown!r} appears twice", unsafe=True)
            self.kinds[member.path] = member.kind
            self.sizes[member.path] = size
        elif member.kind != "dir":
            raise ArchiveRefusal(f"a {member.kind} takes the place of the root", unsafe=True)
        self.members.append(member)

    def finish(self, sha256: str) -> ReleaseLayout:
        """The layout, once links and the official layout check out; raises ArchiveRefusal."""
        if self.expect is not None and len(self.members) != len(self.expect):
            raise ArchiveRefusal("changed while it was being read", unsafe=True)
        self._check_paths()
        tops = {path.parts[0] for path in self.kinds}
        if len(tops) != 1:
            raise ArchiveRefusal("does not have the official layout: expected one top folder",
                                 unsafe=False)
        (top,) = tops
        if PurePosixPath(top, EXTRACTION_MARKER) in self.kinds:
            raise ArchiveRefusal(f"holds {top}/{EXTRACTION_MARKER}, the file extraction "
                                 "writes itself", unsafe=True)
        if self.kinds.get(PurePosixPath(top), "dir") != "dir":
            raise ArchiveRefusal("does not have the official layout: expected one top folder",
                                 unsafe=False)
        if top != self.top:
            raise ArchiveRefusal(f"does not have the official layout: its top folder is "
                                 f"{top!r}, not {self.top!r}", unsafe=False)
        executable = next((name for name in EXECUTABLES
                           if self.kinds.get(PurePosixPath(top, name)) == "file"), None)
        if executable is None:
            raise ArchiveRefusal(f"{top} does not hold a cockroach executable: not an official "
                                 "release archive", unsafe=False)
        return ReleaseLayout(top, executable, tuple(self.members), sha256, self.total)

    def _check_paths(self) -> None:
        # Case-folded, because on a case-insensitive file system "Lib" and "lib/x" are one path.
        not_dirs = {str(p).casefold() for p, k in self.kinds.items() if k != "dir"}
        links = {str(p).casefold() for p, k in self.kinds.items() if k == "symlink"}
        for path in self.kinds:
            for parent in list(path.parents)[:-1]:
                if str(parent).casefold() in not_dirs:
                    raise ArchiveRefusal(
                        f"member {str(path)!r} would be written through {str(parent)!r}, "
                        "which is not a folder", unsafe=True)
        for member in self.members:
            if member.kind == "symlink":
                _check_symlink(member.path, member.link or "", links)


def _check_symlink(path: PurePosixPath, target: str, links: set[str]) -> None:
    shown = f"symlink {str(path)!r} -> {target!r}"
    if not target or target.startswith("/") or _DRIVE.match(target) or "\\" in target:
        raise ArchiveRefusal(f"{shown} points to an absolute or unusable path", unsafe=True)
    resolved = list(path.parent.parts) if path.parent != PurePosixPath(".") else []
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not resolved:
                raise ArchiveRefusal(f"{shown} points outside the archive", unsafe=True)
            resolved.pop()
        elif part != ".":
            resolved.append(part)
            if "/".join(resolved).casefold() in links:
                raise ArchiveRefusal(f"{shown} goes through another symlink", unsafe=True)

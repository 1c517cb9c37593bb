"""Crafted tag files: every one is damage (exit 1) said without a traceback, in bounded time
and memory, by verify, inspect and binary run as processes, as cron runs them.

Each case edits a copy of a real bundle and, unless the case is about the tag manifest,
rewrites the tag manifest to match, so that only the rule under test can catch the edit.
The timeout only guards against a hang; memory is the child's own peak (wait4).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from support.bundles import gnu_tar, make_bundle, retag
from support.measure import Measured, run_measured

Edit = Callable[[Path], object]
MiB = 1 << 20
# A verify of the bundle as made peaks near 40 MiB; the crafted files must not add more than
# the format's own limits allow.
SMALL_PEAK_MIB = 150


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("pristine"))


def edited(pristine: Path, tmp_path: Path, edit: Edit, *, keep_tags: bool = True) -> Path:
    bundle = tmp_path / "dir" / pristine.name
    shutil.copytree(pristine, bundle)
    edit(bundle)
    if keep_tags:
        retag(bundle)
    return bundle


def replace_in(name: str, pattern: str, replacement: str) -> Edit:
    def edit(bundle: Path) -> None:
        text = (bundle / name).read_text("utf-8")
        changed = re.sub(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert changed != text
        (bundle / name).write_text(changed, "utf-8")

    return edit


def write(name: str, content: bytes) -> Edit:
    def edit(bundle: Path) -> None:
        (bundle / name).write_bytes(content)

    return edit


def crlf(name: str) -> Edit:
    def edit(bundle: Path) -> None:
        path = bundle / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    return edit


def duplicate_first_line(name: str) -> Edit:
    def edit(bundle: Path) -> None:
        path = bundle / name
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join([lines[0], *lines]))

    return edit


def continuation_lines(size: int) -> Edit:
    def edit(bundle: Path) -> None:
        path = bundle / "bag-info.txt"
        path.write_bytes(path.read_bytes() + b" x\n" * (size // 3))

    return edit


HUGE = "9" * 5000
# (case, edit, the file named in the problem, a word of the detail); all exit 1.
CASES: list[tuple[str, Edit, str, str]] = [
    ("json nested 100k deep", write("crdb-archive.json", b"[" * 100_000 + b"]" * 100_000),
     "crdb-archive.json", "deep"),
    ("json integer of 5000 digits", replace_in("crdb-archive.json", r'"bytes": \d+',
                                               f'"bytes": {HUGE}'),
     "crdb-archive.json", "digits"),
    ("json invalid utf-8", lambda b: (b / "crdb-archive.json").write_bytes(
        (b / "crdb-archive.json").read_bytes().replace(b'"name"', b'"n\xffme"', 1)),
     "crdb-archive.json", "UTF-8"),
    ("json NaN", replace_in("crdb-archive.json", r'"bytes": \d+', '"bytes": NaN'),
     "crdb-archive.json", "NaN"),
    ("oxum of 5000 digits", replace_in("bag-info.txt", r"^Payload-Oxum: \d+",
                                       f"Payload-Oxum: {HUGE}"),
     "bag-info.txt", "Payload-Oxum"),
    ("oxum with a superscript digit", replace_in("bag-info.txt", r"^Payload-Oxum: (\d+)",
                                                 "Payload-Oxum: \\g<1>\u00b2"),
     "bag-info.txt", "Payload-Oxum"),
    ("size of 5000 digits", replace_in("payload-sizes.txt", r"^\d+", HUGE),
     "payload-sizes.txt", "<bytes>"),
    ("size with a superscript digit", replace_in("payload-sizes.txt", r"^\d+", "1\u00b2"),
     "payload-sizes.txt", "<bytes>"),
    ("bag-info of 3 MB of continuation lines", continuation_lines(3 * MiB),
     "bag-info.txt", "larger than"),
    ("bag-info.txt with CR LF", crlf("bag-info.txt"), "bag-info.txt", "CR LF"),
    ("bagit.txt with CR LF", crlf("bagit.txt"), "bagit.txt", "LF"),
    ("manifest with CR LF", crlf("manifest-sha256.txt"), "manifest-sha256.txt", "CR LF"),
    ("payload-sizes.txt with CR LF", crlf("payload-sizes.txt"), "payload-sizes.txt",
     "CR LF"),
    ("payload-sizes.txt line twice", duplicate_first_line("payload-sizes.txt"),
     "payload-sizes.txt", "twice"),
    ("manifest line twice", duplicate_first_line("manifest-blake3.txt"),
     "manifest-blake3.txt", "twice"),
    ("crdb-archive.json of 9 MiB", write("crdb-archive.json", b" " * (9 * MiB) + b"{}"),
     "crdb-archive.json", "larger than"),
    ("tag manifest with CR LF", crlf("tagmanifest-sha256.txt"), "tagmanifest-sha256.txt",
     "CR LF"),
]


def problems_of(result: Measured) -> list[dict[str, str]]:
    import json  # noqa: PLC0415 - only here

    payload = json.loads(result.out)
    found = payload.get("problems", [])
    assert isinstance(found, list)
    return found


def no_traceback(result: Measured) -> None:
    assert not result.killed, "timed out"
    assert "Traceback" not in result.err, result.err


@pytest.mark.slow
@pytest.mark.parametrize("form", ["dir", "tar"])
@pytest.mark.parametrize(("case", "edit", "path", "word"), CASES, ids=[c[0] for c in CASES])
def test_crafted_tag_file_is_damage(pristine: Path, tmp_path: Path, form: str, case: str,
                                    edit: Edit, path: str, word: str) -> None:
    bundle = edited(pristine, tmp_path, edit, keep_tags=not case.startswith("tag manifest"))
    target = gnu_tar(bundle, tmp_path / f"{bundle.name}.tar") if form == "tar" else bundle
    result = run_measured("verify", str(target), "--json")
    no_traceback(result)
    assert result.code == 1, (result.out, result.err)
    found = problems_of(result)
    assert any(p["path"] == path and word in p["detail"] for p in found), found
    assert result.peak_rss_mib < SMALL_PEAK_MIB


# What each command reads: inspect the description and bag-info.txt, binary the description.
READ_BY = {"inspect": ("crdb-archive.json", "bag-info.txt", "tagmanifest-sha256.txt"),
           "binary": ("crdb-archive.json", "tagmanifest-sha256.txt")}
INSPECTED = [(command, *case) for command, names in READ_BY.items() for case in CASES
             if case[2] in names]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "case", "edit", "path", "word"), INSPECTED,
                         ids=[f"{c[0]}-{c[1]}" for c in INSPECTED])
def test_inspect_and_binary_refuse_in_one_line(pristine: Path, tmp_path: Path, command: str,
                                               case: str, edit: Edit, path: str,
                                               word: str) -> None:
    bundle = edited(pristine, tmp_path, edit, keep_tags=not case.startswith("tag manifest"))
    args = [command, str(bundle)]
    if command == "binary":
        args += ["--to", str(tmp_path / "bin"), "--platform", "linux-amd64"]
    result = run_measured(*args)
    no_traceback(result)
    assert result.code == 1, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert path in lines[0]
    assert result.peak_rss_mib < SMALL_PEAK_MIB


@pytest.mark.slow
def test_continuation_lines_just_under_the_limit_verify(pristine: Path, tmp_path: Path
                                                        ) -> None:
    # 900 KiB of continuation lines fold into the last value: valid, and parsed in linear time.
    bundle = edited(pristine, tmp_path, continuation_lines(900 << 10))
    result = run_measured("verify", str(bundle))
    no_traceback(result)
    assert result.code == 0, result.out


@pytest.mark.slow
@pytest.mark.parametrize("form", ["dir", "tar"])
def test_a_manifest_of_a_million_lines_in_modest_memory(pristine: Path, tmp_path: Path,
                                                        form: str) -> None:
    def million(bundle: Path) -> None:
        digest = hashlib.sha256(b"x").hexdigest()
        with (bundle / "manifest-blake3.txt").open("w") as out:
            for number in range(1_000_000):
                out.write(f"{digest}  data/backup/{number:07d}.sst\n")

    bundle = edited(pristine, tmp_path, million)
    target = gnu_tar(bundle, tmp_path / f"{bundle.name}.tar") if form == "tar" else bundle
    result = run_measured("verify", str(target), "--json")
    no_traceback(result)
    assert result.code == 1
    found = problems_of(result)
    # Each kind listed up to the cap (missing files; paths only in one manifest), then
    # counted: not millions of lines of output.
    assert 2000 <= len(found) <= 2010
    assert any("more problems of this kind" in p["detail"] for p in found)
    # About 330 MiB: one dict of a million paths and their 32-byte digests (850 MB before).
    assert result.peak_rss_mib < 450, result.peak_rss_mib

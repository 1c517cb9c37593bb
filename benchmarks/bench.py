#!/usr/bin/env python3
"""Time crdb-archive's archive and verify beside the standard tools, on the same data, in one run.

    .venv/bin/python benchmarks/bench.py                      # 4 GiB in 64 MiB files + 100k small
    .venv/bin/python benchmarks/bench.py --sizes-gib 1 4      # peak memory at two sizes
    .venv/bin/python benchmarks/bench.py --cold               # drop the page cache before each step

It generates a backup-like tree (a gzipped BACKUP_MANIFEST, data/*.sst), a local mirror with a
release archive, then runs each command as a child process and reports its wall time and peak
resident memory (from wait4). See benchmarks/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.backups import Manifest, write_backup  # noqa: E402
from support.release_archives import build_archive  # noqa: E402

RELEASE = "v23.1.11"
BIN = Path(sys.executable).parent
CHUNK = 64 << 20


@dataclass
class Step:
    label: str
    seconds: float
    peak_mib: float
    reference: str = ""


def run(label: str, command: list[str] | str, *, cold: bool, cwd: Path | None = None) -> Step:
    """Run one command as a child; wall time and the child's peak RSS."""
    if cold:
        drop_caches()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, shell=isinstance(command, str),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label} failed: {stderr.strip()[-500:]}")
    return Step(label, seconds, usage.ru_maxrss / 1024)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"--cold needs root to drop the page cache: {error}") from error


def make_backup(root: Path, total_bytes: int, small_files: int, small_size: int) -> None:
    """A backup-like tree: big SSTs of random bytes, or many small ones."""
    when = dt.datetime(2023, 10, 2, 12, 0, 0, tzinfo=dt.UTC)
    write_backup(root, Manifest(end_time=when), ssts=0)
    data = root / "data"
    data.mkdir(exist_ok=True)
    written = 0
    index = 0
    while written < total_bytes:
        size = min(CHUNK, total_bytes - written)
        with (data / f"{900000 + index}.sst").open("wb") as handle:
            left = size
            while left:
                block = os.urandom(min(left, 8 << 20))
                handle.write(block)
                left -= len(block)
        written += size
        index += 1
    payload = os.urandom(small_size)
    for i in range(small_files):
        (data / f"{100000 + i}.sst").write_bytes(payload[i % 7:] + payload[: i % 7])


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_tree(label: str, source: Path, work: Path, mirror: Path, *, cold: bool) -> list[Step]:
    crdb = str(BIN / "crdb-archive")
    work.mkdir(parents=True, exist_ok=True)
    env_cache = work / "cache"
    os.environ["CRDB_ARCHIVE_CACHE"] = str(env_cache)
    steps: list[Step] = []
    files = f"find {source} -type f -print0"
    # Warm the binary cache so the archive step measures the backup, not the mirror.
    subprocess.run([crdb, "fetch-binary", RELEASE, "--platform", "linux-amd64", "--to",
                    str(work / "warm"), "--mirror", str(mirror)], check=True,
                   capture_output=True)

    steps.append(run(f"{label}: cp -r", ["cp", "-r", str(source), str(work / "cp")], cold=cold))
    steps.append(run(f"{label}: cp -r + sync",
                     f"cp -r {source} {work / 'cp-sync'} && sync", cold=cold))
    steps.append(run(f"{label}: sha256sum (all files)",
                     f"{files} | xargs -0 sha256sum > /dev/null", cold=cold))
    if shutil.which("b3sum"):
        steps.append(run(f"{label}: b3sum (all files)",
                         f"{files} | xargs -0 b3sum > /dev/null", cold=cold))
        steps.append(run(f"{label}: cp -r + sha256sum + b3sum",
                         f"cp -r {source} {work / 'cp3'} && {files} | xargs -0 sha256sum "
                         f"> /dev/null && {files} | xargs -0 b3sum > /dev/null", cold=cold))
    for fmt in ("dir", "tar"):
        dest = work / f"bundles-{fmt}"
        steps.append(run(f"{label}: crdb-archive archive --format {fmt}",
                         [crdb, "archive", str(source), "--dest", str(dest), "--mirror",
                          str(mirror), "--format", fmt, "--name", "bench"], cold=cold))
    bundle = work / "bundles-dir" / "bench"
    tar = work / "bundles-tar" / "bench.tar"
    steps.append(run(f"{label}: crdb-archive verify (blake3)", [crdb, "verify", str(bundle)],
                     cold=cold))
    steps.append(run(f"{label}: crdb-archive verify --all-digests",
                     [crdb, "verify", str(bundle), "--all-digests"], cold=cold))
    steps.append(run(f"{label}: crdb-archive verify .tar (blake3)", [crdb, "verify", str(tar)],
                     cold=cold))
    steps.append(run(f"{label}: crdb-archive verify --fast", [crdb, "verify", str(bundle),
                                                               "--fast"], cold=cold))
    if shutil.which("b3sum"):
        steps.append(run(f"{label}: b3sum -c manifest-blake3.txt",
                         ["b3sum", "-c", "--quiet", "manifest-blake3.txt"], cwd=bundle,
                         cold=cold))
    steps.append(run(f"{label}: sha256sum -c manifest-sha256.txt",
                     ["sha256sum", "-c", "--quiet", "manifest-sha256.txt"], cwd=bundle,
                     cold=cold))
    steps.append(run(f"{label}: bagit.py --validate",
                     [str(BIN / "bagit.py"), "--validate", "--quiet", str(bundle)], cold=cold))
    return steps


def report(steps: list[Step], sizes: dict[str, int], cold: bool) -> str:
    by_label = {s.label: s for s in steps}
    cache = "dropped before each step" if cold else "warm"
    lines = [
        f"date: {dt.date.today().isoformat()}; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}; page cache: {cache}",
        "",
        "| step | seconds | peak RSS MiB | ratio |",
        "| --- | ---: | ---: | --- |",
    ]
    for step in steps:
        label_set, _, what = step.label.partition(": ")
        ratio = ""
        reference = {
            "crdb-archive archive --format dir": "cp -r",
            "crdb-archive archive --format tar": "cp -r",
            "crdb-archive verify (blake3)": "b3sum -c manifest-blake3.txt",
            "crdb-archive verify .tar (blake3)": "b3sum -c manifest-blake3.txt",
            "crdb-archive verify --all-digests": "sha256sum -c manifest-sha256.txt",
        }.get(what)
        if reference is not None and f"{label_set}: {reference}" in by_label:
            base = by_label[f"{label_set}: {reference}"].seconds
            ratio = f"{step.seconds / base:.2f}x {reference}"
        if what.startswith("crdb-archive archive") and f"{label_set}: cp -r + sync" in by_label:
            base = by_label[f"{label_set}: cp -r + sync"].seconds
            ratio += f"; {step.seconds / base:.2f}x cp -r + sync"
        bagit_label = f"{label_set}: bagit.py --validate"
        if what == "crdb-archive verify (blake3)" and bagit_label in by_label:
            base = by_label[bagit_label].seconds
            ratio += f"; bagit.py is {base / step.seconds:.1f}x slower"
        lines.append(f"| {step.label} | {step.seconds:.2f} | {step.peak_mib:.0f} | {ratio} |")
    lines.append("")
    lines += [f"{label}: {size / (1 << 30):.2f} GiB" for label, size in sizes.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gib", type=float, nargs="+", default=[4.0],
                        help="big-file data sets to generate, in GiB (64 MiB files)")
    parser.add_argument("--small-files", type=int, default=100_000,
                        help="number of small files in the second data set (0: skip)")
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to generate data (default: a temporary directory)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before each step (root only)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crdb-archive-bench-", dir=args.workdir))
    try:
        mirror = work / "mirror"
        mirror.mkdir()
        build_archive(mirror, RELEASE, "linux-amd64")
        steps: list[Step] = []
        sizes: dict[str, int] = {}
        sets = [(f"{size:g} GiB", int(size * (1 << 30)), 0) for size in args.sizes_gib]
        if args.small_files:
            sets.append((f"{args.small_files} small files", 0, args.small_files))
        for label, total, small in sets:
            source = work / f"backup-{len(sizes)}"
            print(f"generating {label} ...", file=sys.stderr)
            make_backup(source, total, small, args.small_size)
            sizes[label] = du_bytes(source)
            print(f"timing {label} ...", file=sys.stderr)
            steps += bench_tree(label, source, work / f"run-{len(sizes)}", mirror,
                                cold=args.cold)
            shutil.rmtree(work / f"run-{len(sizes)}", ignore_errors=True)
            if not args.keep:
                shutil.rmtree(source)
        print(report(steps, sizes, args.cold))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Time crdb-archive's archive and verify beside the standard tools, on the same data, in one run.

    .venv/bin/python benchmarks/bench.py                      # 100k small files, 4 GiB, targets
    .venv/bin/python benchmarks/bench.py --files 20000 --big-gib 1     # a quick run
    .venv/bin/python benchmarks/bench.py --json               # the table as JSON on stdout

It generates a backup-like tree (benchmarks/fixture.py), a local binaries mirror, and runs
each command as a child process, recording its wall time and peak resident memory (wait4).
crdb-archive runs as ``<this interpreter> -m crdb_archive.cli``, so that the baseline and the
tool share an interpreter. Each ratio is printed beside its target with PASS or FAIL. See
benchmarks/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fixture import write_backup, write_mirror

CRDB = [sys.executable, "-m", "crdb_archive.cli"]
BAGIT = [sys.executable, str(Path(sys.executable).parent / "bagit.py")]
MiB = 1 << 20
RSS_LIMIT_MIB = 150
RSS_FLAT_SLACK_MIB = 32  # peak RSS at the large size may exceed the small one by this much
STARTUP = "start-up"


@dataclass
class Step:
    data: str  # which data set
    what: str
    seconds: float
    peak_mib: float
    cpu_seconds: float  # user + system, the child and what it waited for


@dataclass
class Target:
    name: str
    value: float
    limit: float
    unit: str  # "x" (a ratio, at most) or "MiB" (at most)

    @property
    def passed(self) -> bool:
        return self.value <= self.limit


class Bench:
    """Runs the steps and keeps what they measured."""

    def __init__(self, work: Path, mirror: Path, *, cold: bool, repeat: int) -> None:
        self.work = work
        self.repeat = repeat
        self.mirror = mirror
        self.cold = cold
        self.steps: list[Step] = []
        self.env = {**os.environ, "CRDB_ARCHIVE_CACHE": str(work / "cache")}

    def run(self, data: str, what: str, command: Sequence[str] | str, *,
            cwd: Path | None = None, output: Path | None = None, keep: bool = False) -> Step:
        """Run one command ``repeat`` times; the fastest wall time and the largest peak RSS.

        ``output``, what the command makes, is out of the way before each repetition but the
        first: removed, or with ``keep`` (many files) moved aside, to be removed with the
        whole data set. On ext4 without a journal, creating files soon after 100k were
        removed walks past every recently freed inode: ``cp -r`` of the same tree was seen
        to take 3 s and then 30 s, whichever step came after a removal.
        """
        runs = []
        for attempt in range(self.repeat):
            if attempt and output is not None:
                if keep:
                    output.rename(output.with_name(f"{output.name}.{attempt}"))
                else:
                    shutil.rmtree(output)
            runs.append(self._once(data, what, command, cwd))
        fastest = min(runs)
        step = Step(data, what, fastest[0], max(r[1] for r in runs), fastest[2])
        self.steps.append(step)
        print(f"  {data}: {what}: {step.seconds:.2f} s, {step.cpu_seconds:.2f} s CPU, "
              f"{step.peak_mib:.0f} MiB", file=sys.stderr)
        return step

    def _once(self, data: str, what: str, command: Sequence[str] | str,
              cwd: Path | None) -> tuple[float, float, float]:
        if self.cold:
            _drop_caches()
        else:
            # Not timed: the step before may have left gigabytes to write back, which the
            # kernel would otherwise do during this one.
            subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, shell=isinstance(command, str),
                                   env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        stderr = process.stderr.read()  # a child that says much must not block on the pipe
        process.stderr.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            text = stderr.decode(errors="replace").strip()[-800:]
            raise SystemExit(f"{data}: {what} failed ({process.returncode}): {text}")
        return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime

    def seconds(self, data: str, what: str) -> float:
        return next(s.seconds for s in self.steps if s.data == data and s.what == what)

    def cpu(self, data: str, what: str) -> float:
        return next(s.cpu_seconds for s in self.steps if s.data == data and s.what == what)

    def peak(self, data: str, what: str) -> float:
        return next(s.peak_mib for s in self.steps if s.data == data and s.what == what)

    def warm_binary_cache(self) -> None:
        """Fetch the release archive once, so that archive measures the backup, not a copy."""
        subprocess.run([*CRDB, "fetch-binary", "v23.1.11", "--platform", "linux-amd64",
                        "--to", str(self.work / "warm"), "--mirror", str(self.mirror)],
                       check=True, capture_output=True, env=self.env)

    def data_set(self, data: str, source: Path, *, baselines: bool, many: bool) -> None:
        """archive and verify (both forms) of ``source``, with the standard tools beside;
        ``many``: it has many files (see :meth:`run`)."""
        out = self.work / f"out-{data.replace(' ', '-')}"
        out.mkdir()
        files = f"find {source} -type f -print0"
        if baselines:
            self.run(data, "cp -r", ["cp", "-r", str(source), str(out / "cp")],
                     output=out / "cp", keep=many)
            self.run(data, "cp -r + sync", f"cp -r {source} {out / 'cp-sync'} && sync",
                     output=out / "cp-sync", keep=many)
            self.run(data, "sha256sum (all files)", f"{files} | xargs -0 sha256sum > /dev/null")
            if not many:  # a few large files: removed at once, to leave room for the rest
                for copy in ("cp", "cp-sync"):
                    shutil.rmtree(out / copy)
        for form in ("dir", "tar"):
            self.run(data, f"archive --format {form}",
                     [*CRDB, "archive", str(source), "--dest", str(out / form), "--mirror",
                      str(self.mirror), "--format", form, "--name", "bench"],
                     output=out / form, keep=many)
        bundle = out / "dir" / "bench"
        self.run(data, "verify (dir)", [*CRDB, "verify", str(bundle)])
        self.run(data, "verify (tar)", [*CRDB, "verify", str(out / "tar" / "bench.tar")])
        if baselines:
            self.run(data, "verify --all-digests (dir)", [*CRDB, "verify", "--all-digests",
                                                          str(bundle)])
            self.run(data, "b3sum -c", ["b3sum", "-c", "--quiet", "manifest-blake3.txt"],
                     cwd=bundle)
            self.run(data, "sha256sum -c", ["sha256sum", "-c", "--quiet",
                                            "manifest-sha256.txt"], cwd=bundle)
            self.run(data, "bagit.py --validate", [*BAGIT, "--validate", "--quiet",
                                                   str(bundle)])
        if not many:
            shutil.rmtree(out)
        # Many files are removed at the end of the run, not here: unlinking 100k files can
        # take longer than the steps, and slows down the next steps' file creation (see run).


    def startup(self, source: Path, runs: int = 21) -> None:
        """``verify`` of a tiny bundle beside a bare ``python -c pass``: the median of ``runs``
        starts each. The package's bytecode is compiled first, as installing it does (an
        editable checkout may run without, which measures the compiler instead)."""
        import crdb_archive  # noqa: PLC0415

        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        str(Path(crdb_archive.__file__).parent)], check=True,
                       capture_output=True, env={**self.env, "PYTHONDONTWRITEBYTECODE": ""})
        out = self.work / "out-startup"
        subprocess.run([*CRDB, "archive", str(source), "--dest", str(out), "--mirror",
                        str(self.mirror), "--name", "tiny"], check=True, capture_output=True,
                       env=self.env)
        for what, command in (("python -c pass", [sys.executable, "-c", "pass"]),
                              ("verify (tiny bundle)", [*CRDB, "verify", str(out / "tiny")])):
            measured = sorted(self._once(STARTUP, what, command, None) for _ in range(runs))
            middle = measured[runs // 2]
            step = Step(STARTUP, what, middle[0], middle[1], middle[2])
            self.steps.append(step)
            print(f"  {STARTUP}: {what}: median {step.seconds * 1000:.0f} ms", file=sys.stderr)


def _drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"--cold needs root to drop the page cache: {error}") from error


def targets(bench: Bench, small: str, big: str, reference: str) -> list[Target]:
    """The design's targets (DESIGN 6) from one run's numbers."""
    ratio = bench.seconds
    found = [
        Target(f"{small}: archive (dir) / cp -r", ratio(small, "archive --format dir")
               / ratio(small, "cp -r"), 1.5, "x"),
        Target(f"{small}: verify (dir) / b3sum -c", ratio(small, "verify (dir)")
               / ratio(small, "b3sum -c"), 1.5, "x"),
        Target(f"{big}: archive (dir) / cp -r", ratio(big, "archive --format dir")
               / ratio(big, "cp -r"), 1.25, "x"),
        Target(f"{big}: verify (dir) / b3sum -c", ratio(big, "verify (dir)")
               / ratio(big, "b3sum -c"), 1.3, "x"),
        Target(f"{big}: verify (tar) / b3sum -c", ratio(big, "verify (tar)")
               / ratio(big, "b3sum -c"), 1.5, "x"),
        Target(f"{STARTUP}: verify (tiny bundle) / python -c pass",
               ratio(STARTUP, "verify (tiny bundle)") / ratio(STARTUP, "python -c pass"),
               10.0, "x"),
    ]
    for what in ("archive --format dir", "archive --format tar", "verify (dir)",
                 "verify (tar)"):
        found.append(Target(f"{small}: peak RSS of {what}", bench.peak(small, what),
                            RSS_LIMIT_MIB, "MiB"))
    for what in ("archive --format dir", "archive --format tar", "verify (dir)",
                 "verify (tar)"):
        # Flat in data size: the large data set may use at most a little more than a small one.
        found.append(Target(f"{big}: peak RSS of {what} (vs {reference}: "
                            f"{bench.peak(reference, what):.0f} MiB)", bench.peak(big, what),
                            bench.peak(reference, what) + RSS_FLAT_SLACK_MIB, "MiB"))
    return found


def informational(bench: Bench, small: str, big: str) -> list[tuple[str, float]]:
    """Ratios the design names without a hard number, and the targets' ratios in CPU time
    (user + system), which another load on the machine disturbs less than wall time."""
    out = []
    for data, what, base in ((small, "archive --format dir", "cp -r"),
                             (small, "verify (dir)", "b3sum -c"),
                             (big, "archive --format dir", "cp -r"),
                             (big, "verify (dir)", "b3sum -c"),
                             (big, "verify (tar)", "b3sum -c")):
        out.append((f"{data}: {what} / {base}, CPU time",
                    bench.cpu(data, what) / max(bench.cpu(data, base), 0.01)))
    for data in (small, big):
        out += [
            (f"{data}: verify (tar) / b3sum -c",
             bench.seconds(data, "verify (tar)") / bench.seconds(data, "b3sum -c")),
            (f"{data}: archive (tar) / cp -r",
             bench.seconds(data, "archive --format tar") / bench.seconds(data, "cp -r")),
            (f"{data}: archive (dir) / cp -r + sync",
             bench.seconds(data, "archive --format dir") / bench.seconds(data, "cp -r + sync")),
            (f"{data}: bagit.py --validate / verify (dir)",
             bench.seconds(data, "bagit.py --validate") / bench.seconds(data, "verify (dir)")),
            (f"{data}: verify --all-digests / sha256sum -c",
             bench.seconds(data, "verify --all-digests (dir)")
             / bench.seconds(data, "sha256sum -c")),
        ]
    return out


def file_system(path: Path) -> str:
    """The file system ``path`` is on, from /proc/mounts: type, device, options."""
    best = ("", "unknown file system")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best[1]
    resolved = str(path.resolve())
    for line in mounts:
        device, point, kind, options, *_ = line.split()
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, f"{kind} on {device} ({options})")
    return best[1]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
            f"python {platform.python_version()}, load average at the end {load}")


def render(bench: Bench, found: list[Target], info: list[tuple[str, float]],
           sizes: dict[str, int]) -> str:
    cache = "dropped before each step" if bench.cold else "warm"
    lines = [f"date: {dt.date.today().isoformat()}; {machine()}; page cache: {cache}; "
             f"data on {file_system(bench.work)}", "",
             "| data | step | seconds | CPU seconds | peak RSS MiB |",
             "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {s.data} | {s.what} | {s.seconds:.2f} | {s.cpu_seconds:.2f} | "
              f"{s.peak_mib:.0f} |" for s in bench.steps]
    lines += ["", "| target | measured | at most | |", "| --- | ---: | ---: | --- |"]
    for target in found:
        value = (f"{target.value:.2f}x" if target.unit == "x" else f"{target.value:.0f} MiB")
        limit = (f"{target.limit:.2f}x" if target.unit == "x" else f"{target.limit:.0f} MiB")
        lines.append(f"| {target.name} | {value} | {limit} | "
                     f"{'PASS' if target.passed else 'FAIL'} |")
    lines += ["", "| also measured | ratio |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.2f}x |" for name, value in info]
    lines += ["", "; ".join(f"{name}: {size / (1 << 30):.2f} GiB" for name, size in sizes.items())]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000,
                        help="small files in the many-files data set (default 100000)")
    parser.add_argument("--small-size", type=int, default=4096,
                        help="bytes per small file (default 4096)")
    parser.add_argument("--big-gib", type=float, default=4.0,
                        help="GiB of the large-file data set, in 64 MiB files (default 4)")
    parser.add_argument("--reference-gib", type=float, default=0.5,
                        help="GiB of the smaller large-file set that peak RSS is compared "
                             "with (flat in data size; default 0.5)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to generate data (default: a temporary directory)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before each step (root only)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each step this many times and keep the fastest (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    for tool in ("b3sum", "sha256sum", "cp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench needs {tool} on PATH")

    work = Path(tempfile.mkdtemp(prefix="crdb-archive-bench-", dir=args.workdir))
    try:
        mirror = work / "mirror"
        write_mirror(mirror)
        bench = Bench(work, mirror, cold=args.cold, repeat=max(1, args.repeat))
        bench.warm_binary_cache()
        small = f"{args.files} files"
        big = f"{args.big_gib:g} GiB"
        reference = f"{args.reference_gib:g} GiB"
        sizes: dict[str, int] = {}
        tiny = work / "tiny"
        write_backup(tiny, small_files=8)
        bench.startup(tiny)
        for data, kwargs, baselines in (
                (small, {"small_files": args.files, "small_size": args.small_size}, True),
                (big, {"big_bytes": int(args.big_gib * (1 << 30))}, True),
                (reference, {"big_bytes": int(args.reference_gib * (1 << 30))}, False)):
            source = work / "source"
            print(f"generating {data} ...", file=sys.stderr)
            sizes[data] = write_backup(source, **kwargs)
            bench.data_set(data, source, baselines=baselines, many="small_files" in kwargs)
            source.rename(work / f"source-{len(sizes)}")
        found = targets(bench, small, big, reference)
        info = informational(bench, small, big)
        if args.json:
            print(json.dumps({
                "date": dt.date.today().isoformat(), "machine": machine(), "cold": args.cold,
                "file_system": file_system(work),
                "repeat": bench.repeat,
                "sizes": sizes, "steps": [asdict(s) for s in bench.steps],
                "targets": [{**asdict(t), "passed": t.passed} for t in found],
                "informational": dict(info),
            }, indent=2))
        else:
            print(render(bench, found, info, sizes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(t.passed for t in found) else 1


if __name__ == "__main__":
    sys.exit(main())

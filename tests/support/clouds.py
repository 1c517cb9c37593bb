"""What the command and job tests of each cloud share: a fresh environment, the archive call,
job events and their recorder."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bagit
import pytest

from crdb_archive.jobs import Destination, JobEvent, JobReport, load_spec, run_job
from support.cli import Signalled, run_cli
from support.mirror import MirrorServer


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No binaries mirror from the environment, and a cache of the test's own."""
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def mirrored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: MirrorServer) -> None:
    """The test's binaries mirror in the environment (as a job finds it), and a cache of the
    test's own."""
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def archive_to(capsys: pytest.CaptureFixture[str], source: str, dest: str, mirror_url: str,
               *extra: str) -> dict[str, object]:
    """``archive --json`` of ``source`` into ``dest``, which must succeed; its JSON answer."""
    result = run_cli(capsys, "archive", source, "--dest", dest, "--mirror", mirror_url,
                     "--json", *extra)
    assert result.code == 0, result.err
    return result.json()


def assert_restorable(capsys: pytest.CaptureFixture[str], bundle: str, tmp_path: Path,
                      files: object) -> None:
    """A v24.3.1 bundle verifies with every digest (``files`` files), gives up a cockroach
    binary that runs, and inspects as v24.3.1."""
    verified = run_cli(capsys, "verify", bundle, "--all-digests", "--json")
    assert verified.code == 0, verified.out
    assert verified.json()["files"] == files
    retrieved = run_cli(capsys, "binary", bundle, "--to", str(tmp_path / "restore"),
                        "--platform", "linux-amd64", "--json")
    assert retrieved.code == 0, retrieved.err
    cockroach = Path(str(retrieved.json()["cockroach"]))
    assert "v24.3.1" in subprocess.run([str(cockroach), "version"], capture_output=True,
                                       text=True, check=True).stdout
    summary = run_cli(capsys, "inspect", bundle, "--json")
    assert summary.code == 0, summary.err
    assert summary.json()["version"] == "v24.3.1"


def assert_read_like_local(capsys: pytest.CaptureFixture[str], result: dict[str, object],
                           local: dict[str, object], scheme: str) -> None:
    """A bundle archived from a backup in a cloud (``result``) is the one archived from the
    same backup on disk (``local``): same name and payload; it verifies, and names its source
    by ``scheme``."""
    assert (result["name"], result["files"], result["bytes"]) == (
        local["name"], local["files"], local["bytes"])
    report = run_cli(capsys, "verify", str(result["bundle"]), "--json")
    assert report.code == 0, report.out
    summary = run_cli(capsys, "inspect", str(result["bundle"]), "--json")
    backup = summary.json()["backup"]
    assert isinstance(backup, dict)
    assert str(backup["source"]).startswith(f"{scheme}://")


def assert_valid_bag(objects: Iterable[tuple[str, bytes]], local: Path) -> None:
    """The objects of a directory bundle (``prefix/name/...``), downloaded into ``local``,
    make a bag that bagit-python and ``sha256sum -c`` accept."""
    for key, data in objects:
        target = local / key.split("/", 2)[2]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    bagit.Bag(str(local)).validate()
    subprocess.run(["sha256sum", "-c", "--quiet", "manifest-sha256.txt"], cwd=local, check=True)


def assert_stopped_cleanly(stopped: Signalled, keys: Sequence[str], fmt: str) -> None:
    """An archive stopped by a signal exits 130 without a traceback, and leaves no bundle
    that looks complete among ``keys``: no tar at all, no directory's tag manifest."""
    assert stopped.returncode == 130, stopped.err
    assert "Traceback" not in stopped.err
    if fmt == "tar":
        assert list(keys) == []
    else:
        # Finished payload objects may remain (the next run clears them); the tag manifest,
        # written last, never does.
        assert not any(k.endswith("tagmanifest-sha256.txt") for k in keys)


def events_of(out: str) -> list[dict[str, object]]:
    """The events of ``run --json``, one JSON object a line."""
    return [json.loads(line) for line in out.splitlines()]


class Recorder:
    """Collects a job's events, each checked to be JSON-serialisable as ``--json`` needs."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def __call__(self, event: JobEvent) -> None:
        json.dumps(event.to_json())
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.fields for e in self.events if e.event == kind]

    def warnings(self, code: str) -> list[dict[str, Any]]:
        return [w for w in self.of("warning") if w["code"] == code]


def run(spec: Path, *, dry_run: bool = False,
        destination: Destination | None = None) -> tuple[JobReport, Recorder]:
    """Run the job of ``spec`` in-process to its end; its report and events."""
    recorder = Recorder()
    report = run_job(load_spec(spec), dry_run=dry_run, on_event=recorder,
                     destination=destination)
    assert recorder.events[-1].event == "done"
    return report, recorder

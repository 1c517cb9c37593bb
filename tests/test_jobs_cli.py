"""``crdb-archive run`` as cron runs it: examples as they are, kills, overlapping runs."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crdb_archive.bundle.verify import verify_bundle
from crdb_archive.jobs import load_spec
from crdb_archive.jobs.lock import lock_file_name
from support.backups import add_random_sst
from support.bundles import era_with_binaries, run_cli, run_subprocess
from support.cli import signal_while_archiving
from support.clouds import events_of
from support.mirror import MirrorServer

EXAMPLES = Path(__file__).resolve().parents[1] / "archive-specs" / "examples"


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
            mirror: MirrorServer) -> dict[str, str]:
    """The environment a scheduler would give the example job, pointed at this test's dirs."""
    values = {
        "CRDB_ARCHIVE_MIRROR": mirror.url,
        "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache"),
        "CRDB_BACKUPS": str(tmp_path / "backups" / "v24.3"),
        "CRDB_BUNDLES": str(tmp_path / "archive"),
    }
    for key, text in values.items():
        monkeypatch.setenv(key, text)
    return {**os.environ, **values}




def test_nightly_example_runs_as_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    job_env: dict[str, str],
) -> None:
    era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    example = EXAMPLES / "nightly-local.toml"
    first = run_cli(capsys, "run", str(example), "--json")
    assert first.code == 0, first.err
    events = events_of(first.out)
    assert {e["job"] for e in events} == {"nightly-orders"}
    assert [e["event"] for e in events] == [
        "plan", "archive", "verify", "retention", "keep", "audit", "audited", "done"]
    written = events[1]
    assert written["created"] is True
    bundle = Path(str(written["location"]))
    assert bundle.parent == tmp_path / "archive"
    report = verify_bundle(bundle)
    assert report.ok
    assert report.description is not None
    assert [b["platform"] for b in report.description["binaries"]] == [
        "linux-amd64", "linux-arm64"]

    second = run_cli(capsys, "run", str(example), "--json")
    assert second.code == 0
    done = events_of(second.out)[-1]
    assert (done["event"], done["bundles_written"], done["bundles_deleted"]) == ("done", 0, 0)


def test_human_output(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                      mirror: MirrorServer, job_env: dict[str, str]) -> None:
    era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    result = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (f"plan: 1 to archive, 0 already archived, 0 skipped; "
                        f"{job_env['CRDB_BACKUPS']} -> {job_env['CRDB_BUNDLES']}")
    assert re.match(r"archived crdb-5f0e3c1a-20241215T000000Z-v24\.3\.1: CockroachDB "
                    r"v24\.3\.1, \d+(\.\d+)? KiB in \d+ files, \d+\.\d s$", lines[1])
    assert lines[2].endswith("(blake3): OK")
    assert lines[3] == "retention: keep 1, delete 0 of 1"
    # The fixture's backup ended in December 2024: long outside keep_days = 30.
    assert lines[4].endswith(": keep_last, keep_monthly 2024-12, keep_yearly 2024, "
                             "written by this run")
    # The example's [audit]: the one bundle there, verified again as the least recent.
    assert re.match(r"audited crdb-5f0e3c1a-20241215T000000Z-v24\.3\.1: OK$", lines[5])
    assert lines[6] == ("audit: 1 checked, 0 damaged, 0 skipped, 0 left for later runs, "
                        "0 never verified")
    assert re.match(r"done: exit 0; 1 bundle written \(\d+(\.\d+)? KiB\), 0 deleted, 0 failures, "
                    r"0 warnings, \d+\.\d s$", lines[7])
    assert result.err == ""  # no progress lines where no terminal watches
    dry = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"), "--dry-run")
    assert dry.out.splitlines()[0].startswith("plan: 0 would archive, 1 already archived")


def test_killed_run_is_finished_by_the_next(
    tmp_path: Path, mirror: MirrorServer, job_env: dict[str, str]
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    # Enough data that the copy is still running when its first progress line arrives.
    add_random_sst(era.path / "2024/12/15-000000.00", 96)
    killed = signal_while_archiving(["run", str(EXAMPLES / "nightly-local.toml"), "--json"],
                                    signal.SIGKILL, env=job_env)
    assert killed.returncode == -signal.SIGKILL
    archive = tmp_path / "archive"
    assert [p.name for p in archive.iterdir() if not p.name.startswith(".")] == []
    lock = archive / lock_file_name("nightly-orders")
    assert json.loads(lock.read_text())["pid"] == killed.pid  # the dead run's record

    rerun = run_subprocess("run", str(EXAMPLES / "nightly-local.toml"), "--json", env=job_env)
    assert rerun.returncode == 0, rerun.stderr
    events = events_of(rerun.stdout)
    warning = next(e for e in events if e["event"] == "warning")
    assert warning["code"] == "lock"
    assert f"pid {killed.pid} on host" in str(warning["message"])
    bundle = next(Path(str(e["location"])) for e in events if e["event"] == "archive")
    assert verify_bundle(bundle).ok
    assert sorted(p.name for p in archive.iterdir() if p.name.startswith(".")) == [
        ".crdb-archive", lock.name]  # the fixity record of the run's verification, the lock
    assert lock.read_text() == ""


HOLD_LOCK = """
import sys
from crdb_archive.jobs import JobLock
from crdb_archive.storage import open_storage
with JobLock(open_storage(sys.argv[1]), sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_overlapping_run_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    job_env: dict[str, str],
) -> None:
    era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    archive = tmp_path / "archive"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(archive), "nightly-orders"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=job_env)
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "locked\n"
        blocked = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"), "--json")
        assert blocked.code == 3
        events = events_of(blocked.out)
        assert [e["event"] for e in events] == ["error", "done"]
        assert events[0]["step"] == "lock"
        assert re.search(rf"job nightly-orders is already running \(pid {holder.pid} on host "
                         r"\S+ since \d{4}-\d\d-\d\dT", str(events[0]["message"]))
        assert [p.name for p in archive.iterdir()] == [lock_file_name("nightly-orders")]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert holder.returncode == 0
    after = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"), "--json")
    assert after.code == 0, after.err
    assert "warning" not in [e["event"] for e in events_of(after.out)]  # released cleanly


def test_stale_lock_is_taken_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    job_env: dict[str, str],
) -> None:
    era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / lock_file_name("nightly-orders")).write_text(json.dumps(
        {"job": "nightly-orders", "pid": 4194304, "host": "old-node",
         "started": "2024-12-15T02:30:00+00:00"}))
    result = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"))
    assert result.code == 0, result.err
    assert ("crdb-archive: warning: the previous run (pid 4194304 on host old-node since "
            "2024-12-15T02:30:00+00:00) ended without releasing the job lock; taking it over"
            ) in result.err


# --- scheduling snippets --------------------------------------------------------------------


def example_specs() -> set[str]:
    return {p.name for p in EXAMPLES.glob("*.toml")}


def crdb_archive_command(words: list[str]) -> list[str]:
    """The words from ``crdb-archive run`` on; asserts the command is a real invocation."""
    start = next(i for i, w in enumerate(words) if w.endswith("crdb-archive"))
    command = words[start + 1:]
    assert command[0] == "run"
    assert Path(command[1]).name in example_specs()
    assert set(command[2:]) - {"--json", "--metrics-file"} <= {
        w for w in command[2:] if w.startswith("/")}
    return command


def test_crontab_line() -> None:
    entries = [line for line in (EXAMPLES / "crontab").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    jobs = [line for line in entries if not re.match(r"^[A-Z_]+=", line)]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    minute, hour, day, month, weekday = fields[:5]
    assert 0 <= int(minute) < 60
    assert 0 <= int(hour) < 24
    assert (day, month, weekday) == ("*", "*", "*")
    words = shlex.split(fields[5].split(">>", 1)[0])
    command = crdb_archive_command(words)
    assert command[command.index("--metrics-file") + 1].endswith(".prom")


def test_systemd_units() -> None:
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read(EXAMPLES / "crdb-archive-nightly.service")
    assert service["Service"]["Type"] == "oneshot"
    crdb_archive_command(shlex.split(service["Service"]["ExecStart"]))
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read(EXAMPLES / "crdb-archive-nightly.timer")
    assert timer["Timer"]["Unit"] == "crdb-archive-nightly.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_kubernetes_cronjob() -> None:
    manifest = yaml.safe_load((EXAMPLES / "k8s-cronjob.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "CronJob")
    spec = manifest["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    crdb_archive_command(container["command"] + container["args"])
    spec_file = Path(container["args"][1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(spec_file.parent) == mounts["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "configMap" in volumes["spec"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    # Every variable the job spec reads is set, so the spec runs as it is in the pod.
    text = (EXAMPLES / spec_file.name).read_text()
    for variable in re.findall(r"\$\{([A-Z_]+)", text):
        assert variable in env
    load_spec(EXAMPLES / spec_file.name)

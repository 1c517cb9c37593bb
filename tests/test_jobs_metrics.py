"""The metrics file: Prometheus text format, atomic, keeping the last success across failures.

The file is read back with a strict parser of the text exposition format written here from the
format's rules, and, as an independent check, with prometheus_client's own parser (the one
Prometheus' Python tooling uses).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crdb_archive.jobs import RunMetrics, render_metrics, write_metrics
from crdb_archive.jobs.lock import JobLock
from crdb_archive.jobs.metrics import previous_last_success
from crdb_archive.storage import open_storage
from support.bundles import era_with_binaries, run_cli
from support.mirror import MirrorServer

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>(?:{_LABEL}={_VALUE})(?:,{_LABEL}={_VALUE})*,?)?\}})?"
    r" (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
)
_PAIR = re.compile(rf"({_LABEL})=({_VALUE})")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Family:
    name: str
    help: str | None = None
    type: str = "untyped"
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)


def parse_prometheus(text: str) -> dict[str, Family]:
    """Parse the text exposition format strictly; raises ValueError on any deviation."""
    if not text.endswith("\n"):
        raise ValueError("the last line must end with a newline")
    families: dict[str, Family] = {}
    finished: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            _comment_line(families, line, number)
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"line {number}: not a sample: {line!r}")
        name = match["name"]
        if name != current:
            if name in finished:
                raise ValueError(f"line {number}: samples of {name} are not grouped")
            if current is not None:
                finished.add(current)
            current = name
        _sample_line(families.setdefault(name, Family(name)), match, number)
    return families


def _comment_line(families: dict[str, Family], line: str, number: int) -> None:
    """A HELP or TYPE line (other comments are ignored)."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        return
    name = parts[2]
    if not re.fullmatch(_NAME, name):
        raise ValueError(f"line {number}: bad metric name {name!r}")
    family = families.setdefault(name, Family(name))
    if parts[1] == "HELP":
        if family.help is not None:
            raise ValueError(f"line {number}: second HELP for {name}")
        family.help = parts[3] if len(parts) > 3 else ""
        return
    if family.samples or (len(parts) > 3 and parts[3] not in _TYPES):
        raise ValueError(f"line {number}: TYPE after samples or unknown type")
    if family.type != "untyped":
        raise ValueError(f"line {number}: second TYPE for {name}")
    family.type = parts[3]


def _sample_line(family: Family, match: re.Match[str], number: int) -> None:
    labels = tuple(sorted((k, _unescape(v[1:-1]))
                          for k, v in _PAIR.findall(match["labels"] or "")))
    if len({k for k, _ in labels}) != len(labels):
        raise ValueError(f"line {number}: a label appears twice")
    if labels in family.samples:
        raise ValueError(f"line {number}: duplicate series {family.name}{labels}")
    family.samples[labels] = _float(match["value"], number)


def _float(text: str, number: int) -> float:
    special = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
    if text in special:
        return special[text]
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"line {number}: bad value {text!r}")
    return float(text)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def value(families: dict[str, Family], name: str, job: str) -> float:
    family = families[f"crdb_archive_job_{name}"]
    assert family.type == "gauge"
    assert family.help
    return family.samples[(("job", job),)]


@pytest.mark.parametrize("bad", [
    "metric 1",  # no final newline
    "metric{job=\"a\"} one\n",
    "metric{job=a} 1\n",
    "metric{job=\"a\",job=\"b\"} 1\n",
    "metric 1\nmetric 2\n",
    "a 1\nb 1\na 2\n",
    "# TYPE metric gauge\n# TYPE metric gauge\nmetric 1\n",
    "# TYPE metric sometimes\nmetric 1\n",
    "metric{job=\"a\\q\"} 1\n",
    "9metric 1\n",
])
def test_the_parser_is_strict(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_prometheus(bad)


def run_metrics(**overrides: object) -> RunMetrics:
    values: dict[str, object] = {
        "job": "nightly", "finished": 1_700_000_000.25, "exit_code": 0, "bundles_written": 2,
        "bytes_written": 12345, "bundles_deleted": 1, "duration_seconds": 3.5, "failures": 0,
        "warnings": 1,
    }
    values.update(overrides)
    return RunMetrics(**values)  # type: ignore[arg-type]


def test_rendered_metrics_parse() -> None:
    families = parse_prometheus(render_metrics(run_metrics(), None))
    assert value(families, "last_success_timestamp_seconds", "nightly") == 1_700_000_000.25
    assert value(families, "last_run_timestamp_seconds", "nightly") == 1_700_000_000.25
    assert value(families, "success", "nightly") == 1
    assert value(families, "bundles_written", "nightly") == 2
    assert value(families, "bytes_written", "nightly") == 12345
    assert value(families, "bundles_deleted", "nightly") == 1
    assert value(families, "duration_seconds", "nightly") == 3.5
    assert value(families, "failures", "nightly") == 0
    assert value(families, "warnings", "nightly") == 1
    assert value(families, "exit_code", "nightly") == 0


def test_prometheus_client_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(path, run_metrics(finished=1000.0))
    write_metrics(path, run_metrics(finished=2000.0, exit_code=3, failures=1))
    samples = {
        (sample.name, sample.labels.get("job")): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }
    assert samples[("crdb_archive_job_last_success_timestamp_seconds", "nightly")] == 1000.0
    assert samples[("crdb_archive_job_last_run_timestamp_seconds", "nightly")] == 2000.0
    assert samples[("crdb_archive_job_failures", "nightly")] == 1
    families = {f.name: f.type for f in text_string_to_metric_families(path.read_text())}
    assert set(families.values()) == {"gauge"}
    assert set(families) == set(parse_prometheus(path.read_text()))


def test_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(path, run_metrics(finished=1000.0))
    write_metrics(path, run_metrics(finished=2000.0, exit_code=3, failures=1))
    families = parse_prometheus(path.read_text())
    assert value(families, "last_success_timestamp_seconds", "nightly") == 1000.0
    assert value(families, "last_run_timestamp_seconds", "nightly") == 2000.0
    assert value(families, "success", "nightly") == 0
    assert value(families, "failures", "nightly") == 1
    write_metrics(path, run_metrics(finished=3000.0, exit_code=1, failures=2))
    assert value(parse_prometheus(path.read_text()), "last_success_timestamp_seconds",
                 "nightly") == 1000.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.prom"]  # no temporary left


def test_never_succeeded_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(path, run_metrics(exit_code=2, failures=1))
    assert value(parse_prometheus(path.read_text()), "last_success_timestamp_seconds",
                 "nightly") == 0


def test_label_values_are_escaped() -> None:
    job = 'odd "name" \\ here'
    families = parse_prometheus(render_metrics(run_metrics(job=job), None))
    assert value(families, "success", job) == 1


def test_last_success_read_back_per_job(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    path.write_text(render_metrics(run_metrics(job='a "b"', finished=42.0), None))
    assert previous_last_success(path, 'a "b"') == 42.0
    assert previous_last_success(path, "other") is None
    assert previous_last_success(tmp_path / "absent.prom", "a") is None


@pytest.fixture
def spec(tmp_path: Path, mirror: MirrorServer,
         monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal nightly job over a v23.1 backup, binaries from the loopback mirror."""
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "job.toml"
    path.write_text(f'[job]\nname = "nightly"\n[source]\nuri = "{era.path}"\n'
                    '[destination]\nuri = "bundles"\n')
    return path


def test_unwritable_metrics_file_is_a_failure_of_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: Path,
) -> None:
    result = run_cli(capsys, "run", str(spec), "--metrics-file",
                     str(tmp_path / "missing-dir" / "job.prom"))
    assert result.code == 3
    assert "cannot write the metrics file" in result.err


def test_cli_metrics_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: Path,
) -> None:
    metrics = tmp_path / "textfile" / "crdb-archive-nightly.prom"
    metrics.parent.mkdir()

    assert run_cli(capsys, "run", str(spec), "--metrics-file", str(metrics)).code == 0
    families = parse_prometheus(metrics.read_text())
    first_success = value(families, "last_success_timestamp_seconds", "nightly")
    assert first_success > 0
    assert value(families, "bundles_written", "nightly") == 1
    assert value(families, "bytes_written", "nightly") > 0
    assert value(families, "failures", "nightly") == 0

    # A dry run writes nothing, and neither does a run that another run's lock refuses.
    before = metrics.read_bytes()
    assert run_cli(capsys, "run", str(spec), "--dry-run", "--metrics-file",
                   str(metrics)).code == 0
    with JobLock(open_storage(str(tmp_path / "bundles")), "nightly"):
        assert run_cli(capsys, "run", str(spec), "--metrics-file", str(metrics)).code == 3
    assert metrics.read_bytes() == before

    shutil.rmtree(tmp_path / "backups")  # the job's source is gone
    failed = run_cli(capsys, "run", str(spec), "--metrics-file", str(metrics))
    assert failed.code == 2
    families = parse_prometheus(metrics.read_text())
    assert value(families, "last_success_timestamp_seconds", "nightly") == first_success
    assert value(families, "success", "nightly") == 0
    assert value(families, "failures", "nightly") == 1
    assert value(families, "exit_code", "nightly") == 2
    assert value(families, "last_run_timestamp_seconds", "nightly") >= first_success

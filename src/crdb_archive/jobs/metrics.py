"""How a run went, for monitoring: Prometheus text format for node_exporter's textfile collector.

The file is replaced atomically (a temporary file in the same directory, then ``os.replace``)
so the collector never reads half of it; the temporary name does not end in ``.prom``, which
the collector ignores. A failed run keeps the previous run's last-success time, read back
from the file, so that an alert on its age fires however many runs fail in a row.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from crdb_archive.errors import StorageError

PREFIX = "crdb_archive_job_"

# (metric name, help text); every metric is a gauge describing the latest run.
METRICS: tuple[tuple[str, str], ...] = (
    ("last_success_timestamp_seconds",
     "Unix time at which the last run without any failure ended (0: none yet)."),
    ("last_run_timestamp_seconds", "Unix time at which the latest run ended."),
    ("success", "1 when the latest run had no failure, else 0."),
    ("exit_code", "Exit code of the latest run."),
    ("bundles_written", "Bundles the latest run wrote."),
    ("bytes_written", "Payload bytes the latest run wrote."),
    ("bundles_deleted", "Bundles the latest run deleted under the retention rules."),
    ("duration_seconds", "How long the latest run took."),
    ("failures", "Steps of the latest run that failed."),
    ("warnings", "Warnings the latest run raised (binary removal, withdrawn release, ...)."),
)

# Reading back one sample: name{job="..."} value [timestamp]
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{job="(?P<job>(?:[^"\\]|\\.)*)"\}'
                     r"\s+(?P<value>\S+)(?:\s+\S+)?\s*$")
_MAX_READ_BACK = 1 << 20


@dataclass(frozen=True)
class RunMetrics:
    job: str
    finished: float  # Unix time
    exit_code: int
    bundles_written: int
    bytes_written: int
    bundles_deleted: int
    duration_seconds: float
    failures: int
    warnings: int

    @property
    def success(self) -> bool:
        return self.exit_code == 0 and self.failures == 0


def render_gauges(prefix: str, label: tuple[str, str],
                  gauges: list[tuple[str, str, float | int]]) -> str:
    """Gauges ``(name, help, value)`` in the exposition format, each with one label."""
    pair = f'{label[0]}="{_escape(label[1])}"'
    lines = []
    for name, help_text, value in gauges:
        lines += [
            f"# HELP {prefix}{name} {help_text}",
            f"# TYPE {prefix}{name} gauge",
            f"{prefix}{name}{{{pair}}} {_number(value)}",
        ]
    return "\n".join(lines) + "\n"


def render_metrics(run: RunMetrics, last_success: float | None) -> str:
    """The exposition text for one run; ``last_success`` is used when this run failed."""
    values: dict[str, float | int] = {
        "last_success_timestamp_seconds": (
            run.finished if run.success else (last_success or 0)),
        "last_run_timestamp_seconds": run.finished,
        "success": int(run.success),
        "exit_code": run.exit_code,
        "bundles_written": run.bundles_written,
        "bytes_written": run.bytes_written,
        "bundles_deleted": run.bundles_deleted,
        "duration_seconds": run.duration_seconds,
        "failures": run.failures,
        "warnings": run.warnings,
    }
    return render_gauges(PREFIX, ("job", run.job),
                         [(name, help_text, values[name]) for name, help_text in METRICS])


def write_metrics(path: Path, run: RunMetrics, *, extra: str = "") -> None:
    """Replace the metrics file at ``path`` atomically, ``extra`` (more families) appended;
    raises StorageError."""
    text = render_metrics(run, None if run.success else previous_last_success(path, run.job))
    write_text_atomically(path, text + extra)


def write_text_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text``: a temporary file beside it (whose name does
    not end in .prom, so the collector passes it by), flushed, then renamed; raises
    StorageError."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.chmod(0o644)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise StorageError(
            f"cannot write the metrics file {path}: {error.strerror or error}") from None
    except BaseException:  # an interrupt: no temporary file left beside the metrics
        temporary.unlink(missing_ok=True)
        raise


def previous_last_success(path: Path, job: str) -> float | None:
    """The last-success time an earlier run of ``job`` wrote to ``path``, if any."""
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            text = stream.read(_MAX_READ_BACK)
    except OSError:
        return None
    wanted = f"{PREFIX}last_success_timestamp_seconds"
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != wanted or _unescape(match["job"]) != job:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            return None
        return value if math.isfinite(value) and value > 0 else None
    return None


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return f"{value:.3f}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)

"""Job specs: every mistake reported at once with its key path; paths and variables resolved."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest

from crdb_archive.errors import BadInput, InvalidJobSpec
from crdb_archive.jobs import load_spec, validate_spec
from crdb_archive.jobs.audit import AUDIT_METRICS, AUDIT_PREFIX
from crdb_archive.jobs.metrics import METRICS, PREFIX
from crdb_archive.jobs.spec import SECTIONS
from support.bundles import run_cli

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
EXAMPLES = Path(__file__).resolve().parents[1] / "archive-specs" / "examples"

MINIMAL = """
[job]
name = "nightly"
[source]
uri = "backups"
[destination]
uri = "bundles"
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    spec = tmp_path / "job.toml"
    spec.write_text(text)
    with pytest.raises(InvalidJobSpec) as info:
        load_spec(spec, now=NOW)
    assert info.value.exit_code == 2
    return info.value.problems


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec_file = tmp_path / "jobs" / "job.toml"
    spec_file.parent.mkdir()
    spec_file.write_text(MINIMAL)
    spec = load_spec(spec_file, now=NOW)
    assert spec.name == "nightly"
    # Relative paths belong to the spec file's directory, not to cron's working directory.
    assert spec.source == str(tmp_path / "jobs" / "backups")
    assert spec.destination == str(tmp_path / "jobs" / "bundles")
    assert spec.backups == "latest"
    assert spec.release is None
    assert spec.platforms == ("linux-amd64",)
    assert spec.format == "dir"
    assert spec.retention is None
    assert spec.object_lock is None
    assert (spec.source_endpoint_url, spec.destination_endpoint_url) == (None, None)
    assert spec.binary_removal_days == 180


def test_full_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET", "archive-bucket")
    monkeypatch.delenv("CRDB_JOB_TEST_UNSET", raising=False)
    (tmp_path / "mirror").mkdir()
    spec = validate_spec(tomllib.loads("""
[job]
name = "weekly.orders-1"
[source]
uri = "file:///var/backups/orders"
backups = "/2024/12/15-000000.00/"
with_incrementals = true
[version]
release = "24.3.1"
force = true
[binaries]
platforms = ["linux-amd64", "linux-arm64"]
mirror = "mirror"
cache_dir = "/var/cache/crdb"
[destination]
uri = "s3://${BUCKET}/orders?AWS_REGION=us-east-1"
endpoint_url = "${CRDB_JOB_TEST_UNSET:-}"
storage_class = "DEEP_ARCHIVE"
[destination.object_lock]
mode = "GOVERNANCE"
retain_until = 2036-01-01
[retention]
keep_last = 3
keep_monthly = 12
[warnings]
binary_removal_days = 0
"""), tmp_path / "job.toml", now=NOW)
    assert spec.source == "/var/backups/orders"
    assert spec.backups == "2024/12/15-000000.00"
    assert spec.with_incrementals
    assert spec.release == "v24.3.1"
    assert spec.force_version
    assert spec.platforms == ("linux-amd64", "linux-arm64")
    assert spec.mirror == str(tmp_path / "mirror")
    assert spec.cache_dir == Path("/var/cache/crdb")
    assert spec.destination == "s3://archive-bucket/orders?AWS_REGION=us-east-1"
    assert spec.destination_endpoint_url is None  # empty: the default chain's endpoint
    assert spec.format == "tar"  # the default for object storage
    assert spec.storage_class == "DEEP_ARCHIVE"
    assert spec.object_lock is not None
    assert spec.object_lock.mode == "GOVERNANCE"
    assert spec.object_lock.retain_until == dt.datetime(2036, 1, 1, tzinfo=dt.UTC)
    assert spec.retention is not None
    assert (spec.retention.keep_last, spec.retention.keep_days) == (3, None)
    assert spec.binary_removal_days == 0


def test_source_and_destination_in_two_clouds_with_their_own_endpoints(tmp_path: Path) -> None:
    spec_file = tmp_path / "job.toml"
    spec_file.write_text(merged(
        '[source]\nuri = "s3://backups/orders"\nendpoint_url = "http://minio.lan:9000"\n'
        '[destination]\nuri = "gs://crdb-archive/orders"\n'
        'endpoint_url = "http://127.0.0.1:4443"\nstorage_class = "ARCHIVE"'))
    spec = load_spec(spec_file, now=NOW)
    assert (spec.source_endpoint_url, spec.destination_endpoint_url) == (
        "http://minio.lan:9000", "http://127.0.0.1:4443")
    assert (spec.format, spec.storage_class) == ("tar", "ARCHIVE")
def test_source_and_destination_in_different_clouds(tmp_path: Path) -> None:
    # Each end has its own endpoint: a run reads from one store and writes to another.
    spec = validate_spec(tomllib.loads("""
[job]
name = "cross"
[source]
uri = "s3://backups/orders"
endpoint_url = "http://minio.lan:9000"
[destination]
uri = "azure-blob://bundles/orders?AZURE_ACCOUNT_NAME=acct&AUTH=implicit"
endpoint_url = "https://acct.blob.core.usgovcloudapi.net"
storage_class = "Archive"
[destination.object_lock]
mode = "COMPLIANCE"
days = 30
"""), tmp_path / "job.toml", now=NOW)
    assert spec.source_endpoint_url == "http://minio.lan:9000"
    assert spec.destination_endpoint_url == "https://acct.blob.core.usgovcloudapi.net"
    assert spec.format == "tar"  # the default for object storage
    assert spec.storage_class == "Archive"
    assert spec.destination_display == ("azure-blob://bundles/orders?AZURE_ACCOUNT_NAME=redacted"
                                         "&AUTH=redacted")


# Each case: a spec fragment added to a valid spec, and the exact problem it must produce.
MISTAKES: list[tuple[str, str, str]] = [
    ("job name", '[job]\nname = "no spaces"', "job.name: must be 1-100 letters"),
    ("job name type", "[job]\nname = 7", "job.name: expected a string, got an integer"),
    ("unknown key", '[job]\nname = "a"\nnmae = "b"', "job.nmae: unknown key (did you mean name?)"),
    ("unknown section", "[sorce]\nuri = 'x'", "sorce: unknown section (did you mean source?)"),
    ("key outside a section", 'name = "x"', "name: unknown section"),
    ("backups", '[source]\nuri = "b"\nbackups = "../x"', "source.backups: '../x' is neither"),
    ("endpoint on a local path", '[destination]\nuri = "b"\nendpoint_url = "http://s3.lan"',
     "destination.endpoint_url: applies only to locations in object storage"),
    ("endpoint scheme", '[source]\nuri = "s3://bkt/x"\nendpoint_url = "ftp://s3.lan"',
     "source.endpoint_url: ftp://s3.lan is not an http(s) URL"),
    ("with_incrementals", '[source]\nuri = "b"\nwith_incrementals = "yes"',
     "source.with_incrementals: expected true or false, got a string"),
    ("source scheme", '[source]\nuri = "nodelocal://1/x"',
     "source.uri: nodelocal://1/x: a node's local storage (nodelocal) (nodelocal://) is not "
     "supported"),
    ("gs without bucket", '[source]\nuri = "gs:///x"', "source.uri: gs:///x names no bucket"),
    ("s3 without bucket", '[source]\nuri = "s3:///x"', "source.uri: s3:///x names no bucket"),
    ("azure without container", '[destination]\nuri = "azure-blob:///x"',
     "destination.uri: azure-blob:///x names no container"),
    ("unset variable", '[source]\nuri = "${CRDB_JOB_TEST_UNSET}/x"',
     "source.uri: environment variable CRDB_JOB_TEST_UNSET is not set"),
    ("empty uri", '[source]\nuri = ""', "source.uri: must not be empty"),
    ("major as release", '[version]\nrelease = "v23.1"', "version.release: v23.1 is a major"),
    ("garbage release", '[version]\nrelease = "latest"', "version.release: "),
    ("force with auto", "[version]\nforce = true", "version.force: applies only with a pinned"),
    ("platform", '[binaries]\nplatforms = ["linux-amd64", "sparc"]',
     "binaries.platforms[1]: unknown platform 'sparc'"),
    ("platform not published", '[version]\nrelease = "v20.2.19"\n'
     '[binaries]\nplatforms = ["linux-arm64"]',
     "binaries.platforms[0]: v20.2.19 was never published for linux-arm64"),
    ("no platforms", "[binaries]\nplatforms = []",
     "binaries.platforms: must name at least one platform"),
    ("mirror scheme", '[binaries]\nmirror = "ftp://mirror.example.com"',
     "binaries.mirror: mirror ftp://mirror.example.com: unsupported scheme"),
    ("format", '[destination]\nuri = "d"\nformat = "zip"',
     "destination.format: 'zip' is not one of dir, tar"),
    ("storage class on a directory", '[destination]\nuri = "d"\nstorage_class = "DEEP_ARCHIVE"',
     "destination.storage_class: applies only to destinations in object storage"),
    ("storage class", '[destination]\nuri = "s3://b/p"\nstorage_class = "COLD"',
     "destination.storage_class: 'COLD' is not one of"),
    ("gs storage class", '[destination]\nuri = "gs://bkt/p"\nstorage_class = "DEEP_ARCHIVE"',
     "destination.storage_class: 'DEEP_ARCHIVE' is not one of STANDARD, NEARLINE, COLDLINE, "
     "ARCHIVE"),
    ("azure access tier", '[destination]\nuri = "azure://c0ntainer/p"\nstorage_class = '
     '"GLACIER"', "destination.storage_class: 'GLACIER' is not one of Hot, Cool, Cold, Archive"),
    ("lock days", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\ndays = 0', "destination.object_lock.days: must be > 0"),
    ("lock mode", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "compliance"\ndays = 1', "destination.object_lock.mode: 'compliance' is not one"),
    ("lock without mode", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\ndays = 1',
     "destination.object_lock.mode: missing"),
    ("lock both", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\ndays = 1\nretain_until = 2040-01-01',
     "destination.object_lock.retain_until: give either days or retain_until, not both"),
    ("lock neither", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"', "destination.object_lock.days: missing: give days or retain_until"),
    ("lock in the past", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\nretain_until = 2020-01-01',
     "destination.object_lock.retain_until: 2020-01-01 is not in the future"),
    ("lock local time", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\nretain_until = 2040-01-01T00:00:00',
     "destination.object_lock.retain_until: a date-time needs an offset"),
    ("lock on a directory", '[destination]\nuri = "d"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\ndays = 1',
     "destination.object_lock: applies only to destinations in object storage"),
    ("lock key", '[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
     'mode = "COMPLIANCE"\ndays = 1\nlegal_hold = true',
     "destination.object_lock.legal_hold: unknown key"),
    ("destination inside source", '[source]\nuri = "b"\n[destination]\nuri = "b/bundles"',
     "destination.uri: the destination {dir}/b/bundles is inside the source {dir}/b: "),
    ("destination is the source", '[source]\nuri = "b"\n[destination]\nuri = "./b/"',
     "destination.uri: the destination {dir}/b is the source itself"),
    ("source inside destination", '[source]\nuri = "d/b"\n[destination]\nuri = "d"',
     "destination.uri: the source {dir}/d/b is inside the destination {dir}/d: "),
    ("s3 destination inside source",
     '[source]\nuri = "s3://bkt/backups"\n[destination]\nuri = "s3://bkt/backups/x"',
     "destination.uri: the destination s3://bkt/backups/x is inside the source "
     "s3://bkt/backups: "),
    ("retention zero", "[retention]\nkeep_last = 0", "retention.keep_last: must be > 0"),
    ("retention bool", "[retention]\nkeep_days = true",
     "retention.keep_days: expected an integer, got a boolean"),
    ("retention float", "[retention]\nkeep_days = 1.5",
     "retention.keep_days: expected an integer, got a number"),
    ("retention empty", "[retention]", "retention: give at least one of keep_last"),
    ("retention unknown rule", "[retention]\nkeep_weekly = 4",
     "retention.keep_weekly: unknown key (did you mean keep_yearly?)"),
    ("warning days", "[warnings]\nbinary_removal_days = -1",
     "warnings.binary_removal_days: must be >= 0"),
]


def merged(fragment: str) -> str:
    """MINIMAL with the fragment's sections replacing its own."""
    base = tomllib.loads(MINIMAL)
    extra = tomllib.loads(fragment)
    sections = {**base, **extra}
    lines = [f"{k} = {_toml(v)}" for k, v in sections.items() if not isinstance(v, dict)]
    for section, values in sections.items():
        if not isinstance(values, dict):
            continue
        lines.append(f"[{section}]")
        tables = []
        for key, value in values.items():
            if isinstance(value, dict):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {_toml(value)}")
        for key, table in tables:
            lines.append(f"[{section}.{key}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


@pytest.mark.parametrize(("fragment", "expected"), [(f, e) for _, f, e in MISTAKES],
                         ids=[name for name, _, _ in MISTAKES])
def test_each_mistake_is_named_by_its_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fragment: str, expected: str
) -> None:
    monkeypatch.delenv("CRDB_JOB_TEST_UNSET", raising=False)
    problems = problems_of(tmp_path, merged(fragment))
    expected = expected.replace("{dir}", str(tmp_path))  # relative paths: from the spec's
    assert any(p.startswith(expected) for p in problems), problems


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[job]
name = "bad name"
[source]
uri = "nodelocal://1/x"
backups = 3
[destination]
uri = "d"
format = "zip"
[retention]
keep_last = -1
""")
    paths = [p.split(":", 1)[0] for p in problems]
    assert paths == ["job.name", "source.uri", "source.backups", "destination.format",
                     "retention.keep_last"]


def test_missing_sections(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "[version]\nrelease = 'auto'\n")
    assert problems == [
        "job: missing section [job]",
        "source: missing section [source]",
        "destination: missing section [destination]",
        "job.name: missing (required)",
        "source.uri: missing (required)",
        "destination.uri: missing (required)",
    ]


def test_not_toml(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "[job\nname = 1\n")
    assert len(problems) == 1
    assert problems[0].startswith("not valid TOML")
    assert "line 1" in problems[0]


def test_unreadable_spec_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read job spec"):
        load_spec(tmp_path / "absent.toml")


def test_variables_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_TEST_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("JOB_TEST_UNSET", raising=False)
    monkeypatch.setenv("JOB_TEST_EMPTY", "")
    spec_file = tmp_path / "job.toml"
    spec_file.write_text("""
[job]
name = "v"
[source]
uri = "${JOB_TEST_ROOT}/backups"
[destination]
uri = "${JOB_TEST_UNSET:-/srv/default}/${JOB_TEST_EMPTY:-x}/$HOME"
""")
    spec = load_spec(spec_file, now=NOW)
    assert spec.source == str(tmp_path / "root" / "backups")
    # Only ${...} is expanded; "$HOME" stays literal text.
    assert spec.destination == "/srv/default/x/$HOME"


def test_secrets_stay_out_of_problems_and_display(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    spec = validate_spec(tomllib.loads(f"""
[job]
name = "s"
[source]
uri = "s3://backups/orders?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY={secret}"
[destination]
uri = "/srv/bundles"
"""), tmp_path / "job.toml", now=NOW)
    assert secret in spec.source  # needed to reach the backups
    assert secret not in spec.source_display
    assert secret not in str(spec.to_json())
    problems = problems_of(tmp_path, f"""
[job]
name = "s"
[source]
uri = "gs://backups/orders?AUTH=specified&BEARER_TOKEN={secret}"
[destination]
uri = "gs://backups/orders/bundles?AUTH=specified&BEARER_TOKEN={secret}"
""")
    assert problems == [
        "destination.uri: the destination gs://backups/orders/bundles?AUTH=redacted"
        "&BEARER_TOKEN=redacted is inside the source gs://backups/orders?AUTH=redacted"
        "&BEARER_TOKEN=redacted: each bundle would land in the backup it archives, and the "
        "next archive would bundle it again; keep bundles apart from the backups"]


def test_cli_prints_each_problem_on_its_own_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(merged('[destination]\nuri = "s3://b/p"\n[destination.object_lock]\n'
                           'mode = "COMPLIANCE"\ndays = 0\n[retention]\nkeep_last = 0'))
    result = run_cli(capsys, "run", str(spec))
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines == [
        f"crdb-archive: error: {spec}: destination.object_lock.days: must be > 0",
        f"crdb-archive: error: {spec}: retention.keep_last: must be > 0",
    ]
    assert result.out == ""
    as_json = run_cli(capsys, "run", str(spec), "--json")
    assert as_json.code == 2
    events = [json.loads(line) for line in as_json.out.splitlines()]
    assert [(e["event"], e["step"], e["message"]) for e in events] == [
        ("error", "spec", "destination.object_lock.days: must be > 0"),
        ("error", "spec", "retention.keep_last: must be > 0"),
    ]


def test_cli_missing_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "run", str(tmp_path / "absent.toml"), "--json")
    assert result.code == 2
    assert result.err == (f"crdb-archive: error: cannot read job spec {tmp_path / 'absent.toml'}"
                          ": No such file or directory\n")
    (event,) = [json.loads(line) for line in result.out.splitlines()]
    assert (event["event"], event["step"], event["exit_code"]) == ("error", "spec", 2)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_are_valid(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("CRDB_BACKUPS", "CRDB_BUNDLES", "ARCHIVE_BUCKET"):
        monkeypatch.delenv(variable, raising=False)
    spec = load_spec(example)
    assert spec.retention is not None
    assert spec.source_display == spec.source  # no credentials in an example


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES.iterdir()}
    assert {"nightly-local.toml", "weekly-s3-deep-archive.toml", "crontab",
            "crdb-archive-nightly.service", "crdb-archive-nightly.timer",
            "k8s-cronjob.yaml"} <= names
    weekly = load_spec(EXAMPLES / "weekly-s3-deep-archive.toml")
    assert weekly.destination_scheme == "s3"
    assert weekly.storage_class == "DEEP_ARCHIVE"
    assert weekly.object_lock is not None
    assert weekly.object_lock.mode == "COMPLIANCE"


def test_readme_documents_every_key_and_metric() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for section, keys in SECTIONS.items():
        for key in keys:
            if f"{section}.{key}" in SECTIONS:
                continue
            assert f"| `{section}.{key}` |" in readme, f"{section}.{key}"
    for name, _ in METRICS:
        assert f"| `{PREFIX}{name}` |" in readme, name
    for name, _ in AUDIT_METRICS:
        assert f"| `{AUDIT_PREFIX}{name}` |" in readme, name

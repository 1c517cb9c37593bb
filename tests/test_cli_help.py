"""Help that reads like a man page, platforms given either way, and contradictory options
refused as usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crdb_archive.cli.app import COMMANDS
from support.bundles import era_with_binaries
from support.cli import run_cli, run_subprocess
from support.mirror import MirrorServer
from support.release_archives import publish

# Every command the tool documents, in the order its help lists them.
EVERY_COMMAND = ["compat", "plan", "releases", "fetch-binary", "inspect", "archive", "verify",
                 "binary", "load", "list", "audit", "run", "restore-request"]

# What a help page must never show: the placeholders of a framework instead of a word.
FRAMEWORK_METAVARS = re.compile(r"[{}<>]|\bstr\b|list\[|%Y|\bTEXT\b|\bINTEGER\b")


def test_the_cli_has_exactly_the_documented_commands() -> None:
    assert list(COMMANDS) == EVERY_COMMAND


@pytest.mark.parametrize("command", EVERY_COMMAND)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_on_every_command_exits_0_with_usage(
    capsys: pytest.CaptureFixture[str], command: str, flag: str
) -> None:
    result = run_cli(capsys, command, flag)
    assert result.code == 0, result.err
    assert result.out.startswith(f"usage: crdb-archive {command} ")
    assert result.err == ""


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_help_wins_over_missing_arguments_and_other_options(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    result = run_cli(capsys, command, "--json", "-h")
    assert result.code == 0, result.err
    assert result.out.startswith(f"usage: crdb-archive {command} ")


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_every_help_lists_its_exit_codes(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out = run_cli(capsys, command, "--help").out
    section = out[out.index("\nexit status:\n"):]
    codes = [int(m.group(1)) for m in re.finditer(r"^  (\d+) +\S", section, re.MULTILINE)]
    assert codes[0] == 0
    assert 2 in codes  # every command can be given bad input
    assert codes[-1] == 130
    assert codes == sorted(codes)


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_help_metavars_are_words(capsys: pytest.CaptureFixture[str], command: str) -> None:
    out = run_cli(capsys, command, "--help").out
    usage = out[:out.index("\n\n")]
    assert not FRAMEWORK_METAVARS.search(usage.replace("[PLATFORM,PLATFORM...]", "")), usage
    # The option column: "  --name METAVAR" up to the help text two spaces further on.
    for line in out.splitlines():
        signature = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if signature:
            shown = signature.group(1).replace("PLATFORM[,PLATFORM...]", "PLATFORM")
            assert not FRAMEWORK_METAVARS.search(shown), line


def test_dates_and_counts_have_real_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    archive = run_cli(capsys, "archive", "-h").out
    assert "--retain-until DATE" in archive
    assert "YYYY-MM-DD" in archive
    assert "--object-lock-days N" in archive
    assert "--platform PLATFORM[,PLATFORM...]" in archive
    assert archive.startswith("usage: crdb-archive archive")
    assert "SOURCE" in archive
    assert "--max-bundles N" in run_cli(capsys, "audit", "-h").out
    assert "--to DIR" in run_cli(capsys, "binary", "-h").out


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_top_level_help_gives_every_command_a_full_summary(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    result = run_cli(capsys, flag)
    assert result.code == 0
    listed = result.out[result.out.index("commands:\n"):result.out.index("\n\noptions:")]
    summaries = {}
    for line in listed.splitlines()[1:]:
        name, summary = line.split(None, 1)
        summaries[name] = summary
    assert list(summaries) == EVERY_COMMAND
    for name, summary in summaries.items():
        assert not summary.endswith("..."), name
        assert summary.endswith((".", "?")), name
        assert len(summary.split()) >= 6, name
    assert "exit status:" in result.out


def test_top_level_help_from_a_process(tmp_path: Path) -> None:
    shown = run_subprocess("-h")
    assert shown.returncode == 0
    assert "restore-request" in shown.stdout
    assert run_subprocess().returncode == 2


# --- --platform: comma-separated, repeated, or both ---------------------------------------------

RELEASE = "v23.1.11"


@pytest.mark.parametrize("given", [
    ["--platform", "linux-amd64,windows-amd64,linux-arm64"],
    ["--platform", "linux-amd64", "--platform", "windows-amd64", "--platform", "linux-arm64"],
    ["--platform", "linux-amd64,windows-amd64", "--platform", "linux-arm64"],
    ["--platform=linux-amd64", "--platform", " windows-amd64, linux-arm64"],
])
def test_fetch_binary_takes_platforms_either_way(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, given: list[str],
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    files = publish(mirror.root, RELEASE, ["linux-amd64", "windows-amd64", "linux-arm64"])
    result = run_cli(capsys, "fetch-binary", RELEASE, *given, "--mirror", mirror.url,
                     "--to", str(tmp_path / "out"), "--json")
    assert result.code == 0, result.err
    fetched = json.loads(result.out)["files"]
    assert [f["platform"] for f in fetched] == ["linux-amd64", "windows-amd64", "linux-arm64"]
    assert {f["platform"]: f["sha256"] for f in fetched} == {
        platform: release.sha256 for platform, release in files.items()}


@pytest.mark.parametrize("given", [
    ["--platform", "linux-amd64,linux-arm64"],
    ["--platform", "linux-amd64", "--platform", "linux-arm64"],
])
def test_archive_takes_platforms_either_way(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, given: list[str],
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v24.3", ("linux-amd64", "linux-arm64"))
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(tmp_path / "bundles"),
                     "--mirror", mirror.url, *given, "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["platforms"] == ["linux-amd64", "linux-arm64"]
    binaries = sorted(p.name for p in (tmp_path / "bundles").glob("*/data/cockroach/*.tgz"))
    assert binaries == [f"cockroach-{era.build_tag}.linux-amd64.tgz",
                        f"cockroach-{era.build_tag}.linux-arm64.tgz"]


@pytest.mark.parametrize("value", ["linux-amd64,", ",linux-amd64", "linux-amd64,,linux-arm64"])
def test_an_empty_platform_in_a_list_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    result = run_cli(capsys, "fetch-binary", RELEASE, "--platform", value,
                     "--to", str(tmp_path / "out"))
    assert result.code == 2
    [line] = result.err.splitlines()
    assert f"--platform {value!r}" in line
    assert not (tmp_path / "out").exists()


# --- contradictory options ------------------------------------------------------------------------

CONTRADICTIONS = [
    (["verify", "BUNDLE", "--fast", "--all-digests"], "--fast and --all-digests"),
    (["verify", "BUNDLE", "--fast", "--decrypt-check"], "--fast and --decrypt-check"),
    (["verify", "BUNDLE", "--kms", "aws:///k?AUTH=implicit&REGION=x"],
     "are for --decrypt-check"),
    (["verify", "BUNDLE", "--encryption-passphrase-file", "FILE"], "are for --decrypt-check"),
    (["archive", "SOURCE", "--dest", "DEST", "--no-cache", "--cache-dir", "CACHE"],
     "--no-cache and --cache-dir"),
    (["archive", "SOURCE", "--dest", "DEST", "--object-lock-mode", "GOVERNANCE",
      "--object-lock-days", "3", "--retain-until", "2040-01-01"],
     "--object-lock-days and --retain-until"),
    (["archive", "SOURCE", "--dest", "DEST", "--force-version"], "--force-version needs"),
    (["fetch-binary", RELEASE, "--to", "DEST", "--no-cache", "--cache-dir", "CACHE"],
     "--no-cache and --cache-dir"),
]


def _placed(args: list[str], tmp_path: Path) -> list[str]:
    """The command line with its placeholders made paths under tmp_path."""
    places = {"BUNDLE": "bundle", "SOURCE": "source", "DEST": "dest", "CACHE": "cache",
              "FILE": "passphrase"}
    return [str(tmp_path / places[a]) if a in places else a for a in args]


@pytest.mark.parametrize(("args", "says"), CONTRADICTIONS)
def test_contradictory_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "source").mkdir()
    (tmp_path / "passphrase").write_text("secret\n")
    result = run_cli(capsys, *_placed(args, tmp_path))
    assert result.code == 2
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith("crdb-archive: error: ")
    assert says in line
    assert f"(see `crdb-archive {args[0]} --help`)" in line
    assert "secret" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passphrase", "source"]


@pytest.mark.parametrize(("args", "says"), CONTRADICTIONS)
def test_contradictory_options_with_json_print_the_error_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], says: str
) -> None:
    result = run_cli(capsys, *_placed(args, tmp_path), "--json")
    assert result.code == 2
    payload = json.loads(result.out)
    assert set(payload) == {"error", "exit_code"}
    assert payload["exit_code"] == 2
    assert says in payload["error"]
    assert len(result.err.splitlines()) == 1


def test_fast_with_all_digests_from_a_process(tmp_path: Path) -> None:
    result = run_subprocess("verify", str(tmp_path), "--fast", "--all-digests", "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "error": "--fast and --all-digests cannot go together: --fast checks no digest at all "
                 "(see `crdb-archive verify --help`)",
        "exit_code": 2}
    [line] = result.stderr.splitlines()
    assert line.startswith("crdb-archive: error: --fast and --all-digests")


def test_options_and_arguments_mix_in_any_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    result = run_cli(capsys, "verify", str(first), "--json", str(second))
    assert result.code == 2  # neither exists: both reported, neither checked
    payload = json.loads(result.out)
    assert [b["bundle"] for b in payload["bundles"]] == [str(first), str(second)]


def test_abbreviated_options_are_not_guessed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_cli(capsys, "verify", str(tmp_path), "--all")
    assert result.code == 2
    assert "no such option: --all" in result.err


def test_a_stray_uri_is_named_without_its_secret(capsys: pytest.CaptureFixture[str]) -> None:
    stray = "s3://bucket/x?AWS_ACCESS_KEY_ID=AKIAEXAMPLE&AWS_SECRET_ACCESS_KEY=hunter2secret"
    result = run_cli(capsys, "releases", "v23.1", stray, "--json")
    assert result.code == 2
    assert "unexpected argument: s3://bucket/x" in result.err
    assert "hunter2secret" not in result.err + result.out


def test_an_unknown_option_is_named_without_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "verify", "b", "--kmss=aws:///k?AWS_SECRET_ACCESS_KEY=hunter2secret")
    assert result.code == 2
    [line] = result.err.splitlines()
    assert "no such option: --kmss " in line
    assert "hunter2secret" not in line

"""The ``crdb-archive`` entry point: find the command, parse its options, run it; the one place
where errors become messages and exit codes.

Only the chosen command's module is imported, and each command imports its core where it
runs: `verify` starts without loading boto3, requests, DuckDB or the job machinery.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from crdb_archive import __version__
from crdb_archive.cli.usage import PROG, UsageError
from crdb_archive.errors import CrdbArchiveError, ExitCode, Interrupted

if TYPE_CHECKING:
    from crdb_archive.cli.options import Command

# `--version` answers before argparse, the option declarations and the output helpers are
# loaded: each of those is imported where it is first needed.

ABOUT = ("Keep CockroachDB data restorable for decades: backups with the binaries that restore "
         "them, and copies that need no CockroachDB.")

# Command name -> the module that declares it, in the order the help lists them.
COMMANDS: dict[str, str] = {
    "compat": "versions",
    "plan": "versions",
    "releases": "versions",
    "fetch-binary": "versions",
    "inspect": "archiving",
    "archive": "archiving",
    "verify": "bundles",
    "binary": "bundles",
    "load": "bundles",
    "list": "catalog",
    "audit": "catalog",
    "run": "jobs",
    "restore-request": "cloud",
}


class _State:
    json = False
    json_lines = False  # `run --json` prints JSON Lines: one compact object per line
    interrupted: str | None = None  # the signal that stopped the command, once one has
    reporting = False  # the outcome is being printed: a signal now changes nothing


def command(name: str) -> Command:
    """The declaration of command ``name``, importing only its module."""
    module = importlib.import_module(f"crdb_archive.cli.{COMMANDS[name]}")
    declared: Command = module.COMMANDS[name]
    return declared


def top_help() -> str:
    """``crdb-archive --help``: every command with its one-line summary."""
    import textwrap  # noqa: PLC0415

    from crdb_archive.cli.options import WIDTH, exit_status  # noqa: PLC0415

    width = max(len(name) for name in COMMANDS) + 4
    lines = [f"usage: {PROG} [-h] [--version] COMMAND [OPTIONS] [ARGUMENTS]", "",
             textwrap.fill(ABOUT, WIDTH), "", "commands:"]
    for name in COMMANDS:
        lines.append(textwrap.fill(command(name).summary, WIDTH,
                                   initial_indent=f"  {name:<{width - 2}}",
                                   subsequent_indent=" " * width))
    lines += ["", "options:", "  -h, --help  show this help message and exit",
              "  --version   print the version and exit", "",
              textwrap.fill(f"Run `{PROG} COMMAND --help` for a command's options, arguments "
                            "and exit codes. With --json, every outcome, errors included, is "
                            'one JSON object on stdout ({"error", "exit_code"} for errors).',
                            WIDTH),
              "",
              exit_status([(0, "success"), (1, "a \"no\" answer, damage or an integrity "
                                                "failure"),
                           (2, "bad input or usage"),
                           (3, "the world failed: network, storage, permissions, KMS"),
                           (130, "interrupted (SIGINT or SIGTERM)")])]
    return "\n".join(lines) + "\n"


def _dispatch(args: list[str]) -> int:
    """Run the command ``args`` name; its exit code. Raises UsageError."""
    if not args:
        _State.reporting = True
        sys.stderr.write(top_help())
        return int(ExitCode.BAD_INPUT)
    first = args[0]
    if first == "--version":
        sys.stdout.write(f"{PROG} {__version__}\n")
        return 0
    if first in ("-h", "--help"):
        sys.stdout.write(top_help())
        return 0
    from crdb_archive.cli.options import build_parser  # noqa: PLC0415

    if first.startswith("-"):
        raise UsageError(f"no such option: {first}")
    if first not in COMMANDS:
        raise UsageError(f"no such command {first!r}")
    chosen = command(first)
    options = build_parser(chosen).parse_command_line(args[1:])
    options.command = chosen.name
    _State.json = bool(getattr(options, "json", False))
    _State.json_lines = _State.json and chosen.json_lines
    return chosen.run(options)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Raised as our own exception, not KeyboardInterrupt, so that nothing on the way out treats
    # it as an ordinary error, and every ``finally`` still removes staging files. Only the
    # first signal stops: a second one (an impatient Ctrl-C, a supervisor that repeats
    # SIGTERM) must not cut that cleanup short; SIGKILL remains for that.
    if _State.interrupted or _State.reporting:
        return
    _State.interrupted = f"interrupted by {signal.Signals(signum).name}"
    raise Interrupted(_State.interrupted)


def _unraisable(event: sys.UnraisableHookArgs) -> None:
    # An interrupt raised while a worker thread is being started can leave CPython's thread
    # bookkeeping to complain from that thread as it exits; after an interrupt that is noise
    # on top of the one-line message, not news. So is a ResourceWarning about the socket of a
    # connection that broke mid-body, which a cloud SDK drops without closing (Python hides
    # those unless warnings are turned on): the read that used it was resumed or reported.
    if _State.interrupted or isinstance(event.exc_value, ResourceWarning):
        return
    sys.__unraisablehook__(event)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where errors become messages and exit codes."""
    # main may run more than once in a process (tests do)
    _State.json = _State.json_lines = _State.reporting = False
    _State.interrupted = None
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _dispatch(args)
    except Interrupted as stop:  # not a CrdbArchiveError: nothing below may treat it as data
        _fail(str(stop), stop.exit_code)
    except Exception as error:
        # A library that polls for signals itself (DuckDB does, mid-query) answers our
        # interrupt with an error of its own: the interrupt is still the outcome.
        if _State.interrupted:
            _fail(_State.interrupted, Interrupted.exit_code)
        if isinstance(error, CrdbArchiveError):
            _fail(str(error), error.exit_code)
        if _is_output_closed(error):
            _output_lost()
        if isinstance(error, UsageError):
            _State.json = _State.json or "--json" in args
            _State.json_lines = _State.json_lines or (
                _State.json and args[:1] == ["run"] and command("run").json_lines)
            _fail(str(error), ExitCode.BAD_INPUT)
        raise
    except SystemExit:  # help pages: argparse prints them and exits 0
        _State.reporting = True
        raise
    _State.reporting = True
    sys.exit(code)


def _is_output_closed(error: Exception) -> bool:
    if not isinstance(error, BrokenPipeError):
        return False
    from crdb_archive import ui  # noqa: PLC0415

    return isinstance(error, ui.OutputClosed)


def _output_lost() -> NoReturn:
    """The reader of stdout went away (``| head``): one line, exit 3, and no second complaint
    from the interpreter flushing stdout at exit."""
    import os  # noqa: PLC0415

    from crdb_archive import ui  # noqa: PLC0415

    _State.reporting = True
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    ui.error_line("stdout was closed before the output was all written (broken pipe)")
    sys.exit(int(ExitCode.WORLD))


def _fail(message: str, code: ExitCode) -> NoReturn:
    import contextlib  # noqa: PLC0415

    from crdb_archive import ui  # noqa: PLC0415

    _State.reporting = True
    ui.error_line(message)
    if _State.json:
        payload = {"error": message, "exit_code": int(code)}
        with contextlib.suppress(ui.OutputClosed):  # the one line on stderr said it
            if _State.json_lines:
                ui.json_line(payload)
            else:
                ui.print_json(payload)
    sys.exit(int(code))

"""What the commands share: how a command is declared and its help laid out, the options
several commands take, their value types, and the objects some of them load (keys, signers).

Nothing heavy is imported here: every command's parser is built from this module before the
command imports its core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from crdb_archive.cli.usage import PROG, UsageError
from crdb_archive.errors import BadInput

if TYPE_CHECKING:
    from crdb_archive.backup.keys import EncryptionKeys
    from crdb_archive.bundle.signature import AllowedSigners, SigningKey

__all__ = ["PROG", "UsageError"]

INTERRUPTED = (130, "interrupted by SIGINT or SIGTERM (nothing half-written is left behind)")
WIDTH = 100


@dataclass(frozen=True)
class Command:
    """One command: its name, what ``crdb-archive --help`` says of it, its help page, how its
    options are declared and what runs it (returning the exit code)."""

    name: str
    summary: str
    description: str
    exit_codes: Sequence[tuple[int, str]]
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    json_lines: bool = False  # `run --json` prints JSON Lines: one compact object per line


class _Formatter(argparse.HelpFormatter):
    """Paragraphs filled to the width; a paragraph whose lines are indented (the exit status
    table) kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=WIDTH)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # URIs and option names keep their hyphens: azure-blob:// is not two words
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False,
                             break_long_words=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            if any(line.startswith("  ") for line in paragraph.splitlines()):
                paragraphs.append(paragraph)
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                                initial_indent=indent,
                                                subsequent_indent=indent,
                                                break_on_hyphens=False,
                                                break_long_words=False))
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """argparse that raises its complaint as a :class:`UsageError`, instead of printing its
    usage text and exiting, so that main reports it as one line (and JSON with --json)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_reword(message), self.prog)

    def parse_command_line(self, args: list[str]) -> argparse.Namespace:
        """Options and arguments in any order, as a shell user writes them; raises
        UsageError."""
        self._refuse_unknown_options(args)
        try:
            return self.parse_intermixed_args(args)
        except UsageError as error:
            if not error.problem.startswith("missing "):
                raise
            # The intermixed parse checks options before arguments: name every missing one.
            try:
                self.parse_known_args(args)
            except UsageError as everything:
                if everything.problem.startswith("missing "):
                    raise everything from None
            raise


    def _refuse_unknown_options(self, args: list[str]) -> None:
        # An unknown option is the first thing to name, before what else is missing: a typo
        # in an option name explains the rest.
        for arg in args:
            if arg == "--":
                return
            name = arg.split("=", 1)[0]
            if (arg.startswith("-") and arg != "-" and not _NUMBER.fullmatch(arg)
                    and name not in self._option_string_actions):
                raise UsageError(f"no such option: {name}", self.prog)


_NUMBER = re.compile(r"-\d+(\.\d*)?")


def _reword(message: str) -> str:
    """argparse's complaint in the words of this tool."""
    required = "the following arguments are required: "
    if message.startswith(required):
        return "missing " + message.removeprefix(required).replace(", ", " and ")
    unrecognized = "unrecognized arguments: "
    if message.startswith(unrecognized):
        # A stray argument may be a URI with a key in it: never echo a secret.
        from crdb_archive.storage.uri import redact  # noqa: PLC0415

        extra = [redact(arg) for arg in message.removeprefix(unrecognized).split()]
        return f"unexpected argument{'s' if len(extra) > 1 else ''}: {' '.join(extra)}"
    if message.startswith("argument "):
        # "argument --days: 'soon': expected a whole number" -> "--days 'soon': expected ..."
        name, _, problem = message.removeprefix("argument ").partition(": ")
        return f"{name} {problem}" if problem.startswith("'") else f"{name}: {problem}"
    return message


def exit_status(codes: Sequence[tuple[int, str]]) -> str:
    """The "exit status:" section of a help page, one code a line, meanings wrapped."""
    lines = ["exit status:"]
    for code, meaning in codes:
        lines.append(textwrap.fill(meaning, WIDTH, initial_indent=f"  {code:<5}",
                                   subsequent_indent=" " * 7))
    return "\n".join(lines)


def build_parser(command: Command) -> Parser:
    """The parser of one command, with its help page."""
    parser = Parser(
        prog=f"{PROG} {command.name}",
        description=f"{command.summary}\n\n{command.description}".strip(),
        epilog=exit_status([*command.exit_codes, INTERRUPTED]),
        formatter_class=_Formatter,
        allow_abbrev=False,  # an abbreviation that works today breaks when an option is added
    )
    command.configure(parser)
    return parser


# --- value types ---------------------------------------------------------------------------------


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None


def positive_number(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


def utc_date(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` as midnight UTC."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date as YYYY-MM-DD")
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date as YYYY-MM-DD") from None


def platform_list(text: str) -> list[str]:
    """``linux-amd64,linux-arm64``: one or more platforms, comma-separated."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected platforms separated by commas")
    return names


def choice(*allowed: str) -> Callable[[str], str]:
    """A value among ``allowed``, named in the complaint otherwise."""
    words = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"

    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {words}")
        return text

    return parse


def refuse_together(args: argparse.Namespace, first: str, second: str, why: str) -> None:
    """Two options that contradict each other are a usage error naming both."""
    if _given(getattr(args, _dest(first))) and _given(getattr(args, _dest(second))):
        raise UsageError(f"{first} and {second} cannot go together: {why}",
                         f"{PROG} {args.command}")


def _dest(option: str) -> str:
    return option.removeprefix("--").replace("-", "_")


def _given(value: Any) -> bool:
    return value not in (None, False, [])


# --- shared options ------------------------------------------------------------------------------


def add_json(parser: argparse._ActionsContainer,
             text: str = "Print one JSON object on stdout.") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def add_endpoint(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--endpoint-url", metavar="URL",
        help="Endpoint of the location in object storage when its URI names none: an "
             "S3-compatible store for s3:// (default $AWS_ENDPOINT_URL, else AWS), a Cloud "
             "Storage endpoint for gs:// (default $STORAGE_EMULATOR_HOST, else Google), an "
             "emulator or private endpoint for azure-blob://. With two locations in different "
             "clouds, give each its endpoint in its URI.")


def add_platforms(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--platform", dest="platform", action="extend", type=platform_list,
        metavar="PLATFORM[,PLATFORM...]",
        help="Platforms, comma-separated or the option repeated: linux-amd64 (default), "
             "linux-arm64, linux-amd64-fips, darwin-amd64, darwin-arm64, windows-amd64.")


def add_mirror(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--mirror", metavar="URL|DIR",
        help="Mirror base URL (http, https, file://) or directory; default "
             "$CRDB_ARCHIVE_MIRROR, else https://binaries.cockroachdb.com.")


def add_cache(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="Download cache; default $CRDB_ARCHIVE_CACHE, else the user's cache directory. "
             "Entries answer only for the mirror they came from.")
    parser.add_argument("--no-cache", action="store_true",
                        help="Neither read nor fill the download cache.")


def add_keys(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--encryption-passphrase-file", type=Path, metavar="FILE",
        help="File holding the passphrase the backup was encrypted with (BACKUP ... WITH "
             "encryption_passphrase); read once, one trailing newline removed. Default: "
             "$CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE. Never give a passphrase on the command "
             "line.")
    parser.add_argument(
        "--kms", action="append", metavar="URI|@FILE",
        help="KMS key the backup was encrypted with, as given to BACKUP ... WITH kms: "
             "aws:///<key id or ARN>?AUTH=implicit&REGION=... (repeatable). A URI with "
             "AWS_SECRET_ACCESS_KEY would show in the process list: put it in a file and give "
             "--kms @FILE (one URI a line).")


def add_sign_key(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--sign-key", type=Path, metavar="FILE",
        help="Sign each new bundle with this unencrypted OpenSSH Ed25519 private key "
             "(ssh-keygen -t ed25519 -N ''): tagmanifest-sha256.txt.sig, checkable with "
             "`ssh-keygen -Y verify -n crdb-archive`. Default: the file $CRDB_ARCHIVE_SIGN_KEY "
             "names.")


def add_allowed_signers(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--allowed-signers", type=Path, metavar="FILE",
        help="OpenSSH allowed_signers file: require a valid signature "
             "(tagmanifest-sha256.txt.sig) by a key it lists for namespace crdb-archive.")


def add_replace(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--replace", action="store_true",
        help="Replace an earlier extraction of the same archive (and, for fetch-binary, a "
             "different file of the archive's name) in --to; nothing else is ever replaced.")


def add_metrics_file(parser: argparse._ActionsContainer, what: str) -> None:
    parser.add_argument(
        "--metrics-file", type=Path, metavar="FILE",
        help=f"Write the {what}'s metrics in Prometheus text format to FILE, atomically (for "
             "node_exporter's textfile collector).")


# --- what some options load ----------------------------------------------------------------------

# The passphrase variable's name, repeated here so that commands that never read it can drop
# it without importing the backup machinery (crdb_archive.backup.keys.PASSPHRASE_ENV).
PASSPHRASE_ENV = "CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE"  # noqa: S105 - a variable name

# A path, not the key: the environment of a process is readable by its user, and a key file
# keeps its own permissions.
SIGN_KEY_ENV = "CRDB_ARCHIVE_SIGN_KEY"


def forget_passphrase() -> None:
    """Drop the passphrase from the environment, so that no process this one starts (such as
    ``cockroach version``) inherits it."""
    os.environ.pop(PASSPHRASE_ENV, None)


def load_keys(passphrase_file: Path | None, kms: list[str] | None) -> EncryptionKeys:
    """The keys given, read once; the passphrase then leaves the environment."""
    from crdb_archive.backup.keys import load_keys as load  # noqa: PLC0415

    try:
        return load(passphrase_file=passphrase_file, kms=kms or ())
    finally:
        forget_passphrase()


def load_sign_key(path: Path | None) -> SigningKey | None:
    """The signing key given (``--sign-key``, else the file $CRDB_ARCHIVE_SIGN_KEY names),
    loaded and checked before anything is written; raises BadInput."""
    chosen = path if path is not None else (
        Path(os.environ[SIGN_KEY_ENV]) if os.environ.get(SIGN_KEY_ENV) else None)
    if chosen is None:
        return None
    from crdb_archive.bundle.signature import load_signing_key  # noqa: PLC0415

    return load_signing_key(chosen)


def load_allowed_signers(path: Path | None) -> AllowedSigners | None:
    """The allowed signers file given, if any; raises BadInput when it lists no key."""
    if path is None:
        return None
    from crdb_archive.bundle.signature import AllowedSigners  # noqa: PLC0415

    allowed = AllowedSigners.load(path)
    if not allowed.signers:
        raise BadInput(f"{path} lists no ssh-ed25519 key: no bundle signature could be "
                       "accepted")
    return allowed

"""The usage error: a command line that does not parse, told apart from every error of the
core before anything heavier than this module is loaded."""

from __future__ import annotations

PROG = "crdb-archive"


class UsageError(Exception):
    """A command line that does not parse: exit 2 with one line naming the problem, and where
    to read the command's usage."""

    def __init__(self, problem: str, prog: str = PROG) -> None:
        super().__init__(f"{problem} (see `{prog} --help`)")
        self.problem = problem

"""The published JSON Schemas of every command's ``--json`` output (archive-specs/json/), loaded
with the ``jsonschema`` library, and checks of real CLI output against them."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from support.cli import CliResult

SCHEMAS = Path(__file__).resolve().parents[2] / "archive-specs" / "json"
BASE = "https://crdb-archive.invalid/schemas/json/"
# Schemas that describe no command of their own.
SHARED = ("common", "error", "progress")


def schema_names() -> list[str]:
    """Every published schema, by the name before ``.schema.json``."""
    return sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return document


@functools.cache
def registry() -> Registry[Any]:
    """Every schema under its $id, so that references between the files resolve offline."""
    resources = [(load(name)["$id"], Resource.from_contents(load(name)))
                 for name in schema_names()]
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load(name), registry=registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def problems(name: str, instance: object) -> list[str]:
    """Why ``instance`` does not follow schema ``name`` (empty when it does)."""
    found = validator(name).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in found]


def check(name: str, instance: object) -> None:
    """Assert ``instance`` follows schema ``name``, and that the schema is closed: the same
    object with one key more is refused, so output that grows a key fails its test until the
    schema says what the key is."""
    assert problems(name, instance) == [], json.dumps(instance, indent=1)[:4000]
    if isinstance(instance, dict):
        grown = {**instance, "not_in_the_contract": 1}
        assert problems(name, grown), f"{name}.schema.json accepts keys it does not name"


def check_output(result: CliResult, name: str, *, code: int = 0) -> dict[str, Any]:
    """The command's stdout: one JSON object that follows schema ``name``, with exit ``code``."""
    assert result.code == code, (result.code, result.out, result.err)
    payload: dict[str, Any] = json.loads(result.out)
    check(name, payload)
    return payload


def check_error(result: CliResult, code: int) -> dict[str, Any]:
    """A failure with --json: ``{"error", "exit_code"}`` on stdout, the same one line on
    stderr, and the exit code it names."""
    assert result.code == code, (result.code, result.out, result.err)
    payload: dict[str, Any] = json.loads(result.out)
    check("error", payload)
    assert payload["exit_code"] == code
    assert payload["error"] in result.err
    assert "Traceback" not in result.err
    return payload


def check_lines(out: str, name: str = "run") -> list[dict[str, Any]]:
    """JSON Lines output: every line one object that follows schema ``name``."""
    events: list[dict[str, Any]] = []
    for line in out.splitlines():
        event = json.loads(line)
        check(name, event)
        events.append(event)
    return events


def commands_in_help(text: str) -> set[str]:
    """The command names a ``--help`` lists: the lines of its commands section (click's
    ``Commands:``), or the ``{a,b,...}`` choice argparse prints for subcommands."""
    found: set[str] = set()
    for choice in re.findall(r"\{([a-z][a-z,-]*)\}", text):
        found.update(choice.split(","))
    section = re.search(r"^(?:commands|subcommands)[^\n]*:\n((?:[ \t]+\S.*\n?)+)", text,
                        re.IGNORECASE | re.MULTILINE)
    if section is not None:
        lines = section[1].splitlines()
        # A summary that wraps continues further in: only the least indented lines name.
        indent = min(len(line) - len(line.lstrip()) for line in lines)
        for line in lines:
            first = line.split()[0]
            if len(line) - len(line.lstrip()) == indent and re.fullmatch(r"[a-z][a-z-]*", first):
                found.add(first)
    return found

"""crdb-archive.json: the machine-readable description of a bundle, and its JSON Schema."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_FILE = "bundle-manifest.schema.json"


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of crdb-archive.json, format 1 (shipped with the package)."""
    text = resources.files("crdb_archive").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def schema_problems(description: Any) -> list[str]:
    """Every way ``description`` breaks the schema, as one-line messages; empty when valid."""
    problems = []
    for error in sorted(_validator().iter_errors(description), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    return problems


def render(description: dict[str, Any]) -> bytes:
    """crdb-archive.json bytes: stable key order, indented, UTF-8, final newline."""
    return (json.dumps(description, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

"""crdb-archive.json: the machine-readable description of a bundle, and its JSON Schema."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from crdb_archive.errors import DamagedBundle

if TYPE_CHECKING:
    import jsonschema

SCHEMA_FILE = "bundle-manifest.schema.json"


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of crdb-archive.json, format 1 (shipped with the package)."""
    from importlib import resources  # noqa: PLC0415 - a reader never needs it

    text = resources.files("crdb_archive").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    # Imported here: jsonschema takes longer to import than a small bundle takes to verify,
    # and only the writers (and the tests) need it; readers check the typed model.
    import jsonschema  # noqa: PLC0415

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


def description_problems(description: Any) -> list[str]:
    """How ``description`` fails the typed model of the format (the first problem, as one
    line naming the key); empty when it reads. What a reader checks: the same rules as the
    schema's, without loading a schema validator."""
    from crdb_archive.bundle.description import from_json  # noqa: PLC0415

    try:
        from_json(description)
    except DamagedBundle as error:
        return [str(error).removeprefix("crdb-archive.json: ")]
    return []


def render(description: dict[str, Any]) -> bytes:
    """crdb-archive.json bytes: stable key order, indented, UTF-8, final newline."""
    return (json.dumps(description, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

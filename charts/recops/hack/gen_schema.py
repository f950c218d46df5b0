#!/usr/bin/env python3
"""Generate the chart's values.schema.json from values.yaml and its comments.

    python charts/recops/hack/gen_schema.py           write values.schema.json
    python charts/recops/hack/gen_schema.py --check   exit 1 when the file is stale

Types are inferred from the default values; `# -- text` comments become descriptions and
`# @schema {json}` lines are merged into the inferred schema (enum, minimum, pattern, items...).
Every object gets `additionalProperties: false` unless its `@schema` line sets it, so unknown keys
are rejected by `helm install/template/lint`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1]
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def comment_notes(text: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """Per key path: {"description": ..., "schema": {...}} from the comment block right above the key."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    stack: list[tuple[int, str]] = []
    desc: list[str] = []
    extra: dict[str, Any] = {}
    in_desc = False
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if body.startswith("-- "):
                desc, in_desc = [body[3:].strip()], True
            elif body.startswith("@schema "):
                try:
                    extra.update(json.loads(body[len("@schema "):]))
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"values.yaml:{lineno}: bad @schema JSON: {exc}") from exc
                in_desc = False
            elif in_desc and stripped.startswith("#   "):
                desc.append(body)
            else:
                in_desc = False
            continue
        if not stripped:
            desc, extra, in_desc = [], {}, False
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("- "):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        path = tuple(k for _, k in stack)
        found[path] = {"description": " ".join(desc), "schema": extra}
        desc, extra, in_desc = [], {}, False
    return found


def infer(value: Any, path: tuple[str, ...], notes: dict[tuple[str, ...], dict[str, Any]]) -> dict[str, Any]:
    note = notes.get(path, {"description": "", "schema": {}})
    extra = dict(note["schema"])
    schema: dict[str, Any] = {}
    if isinstance(value, bool):
        schema["type"] = "boolean"
    elif isinstance(value, int):
        schema["type"] = "integer"
    elif isinstance(value, float):
        schema["type"] = "number"
    elif isinstance(value, str):
        schema["type"] = "string"
    elif isinstance(value, list):
        schema["type"] = "array"
        if value and "items" not in extra:
            schema["items"] = infer(value[0], (*path, "[]"), {})
            schema["items"].pop("description", None)
    elif isinstance(value, dict):
        schema["type"] = "object"
        free = extra.get("additionalProperties", False) is not False
        if value and not free:
            schema["properties"] = {k: infer(v, (*path, k), notes) for k, v in value.items()}
        if "additionalProperties" not in extra:
            schema["additionalProperties"] = False
    elif value is None and "type" not in extra:
        raise SystemExit(f"values.yaml: {'.'.join(path)} is null: give it a `# @schema {{\"type\": ...}}`")
    if note["description"]:
        schema["description"] = note["description"]
    if "items" in extra and isinstance(schema.get("items"), dict):
        extra["items"] = {**schema["items"], **extra["items"]}
    schema.update(extra)
    return schema


def render(values_path: Path = CHART / "values.yaml") -> str:
    text = values_path.read_text()
    values = yaml.safe_load(text) or {}
    notes = comment_notes(text)
    missing = [".".join(p) for p in _leaf_paths(values) if not notes.get(p, {}).get("description")
               and not _has_described_parent(p, notes)]
    if missing:
        raise SystemExit("values.yaml: undocumented keys (add a `# -- ` comment): " + ", ".join(missing))
    root = infer(values, (), notes)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Recops chart values", **root}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def _leaf_paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _leaf_paths(v, (*path, k))]
    return [path]


def _has_described_parent(path: tuple[str, ...], notes: dict[tuple[str, ...], dict[str, Any]]) -> bool:
    """A leaf inside a free-form documented object (resources.requests.cpu) needs no comment of its own."""
    return any(notes.get(path[:i], {}).get("description") for i in range(1, len(path)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when values.schema.json is stale")
    args = parser.parse_args(argv)
    target = CHART / "values.schema.json"
    text = render()
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"Stale: {target} (run `python {Path(__file__).relative_to(CHART.parents[1])}`)", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"Wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

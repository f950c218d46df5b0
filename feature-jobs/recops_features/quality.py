"""Quality gates: pure checks of the output tables against the config's thresholds.

Each check yields ``{name, passed, observed, threshold}``; the job publishes only when all pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from recops_features.config import DEFAULT_KEYS, Quality, UniqueKey, parse_duration
from recops_features.snapshot import schema_of


@dataclass(frozen=True)
class Check:
    """One gate's outcome (what goes into the result's ``quality`` list)."""

    name: str
    passed: bool
    observed: Any
    threshold: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FAMILIES = {
    "int": {"int"},
    "float": {"float"},
    "number": {"int", "float"},
    "string": {"string", "category"},
    "category": {"category", "string"},
    "bool": {"bool"},
    "timestamp": {"timestamp"},
    "date": {"date", "timestamp"},
}


def _missing_table(name: str, table: str, threshold: Any) -> Check:
    return Check(name, False, f"no table {table!r}", threshold)


def check_min_rows(tables: dict[str, pd.DataFrame], quality: Quality) -> list[Check]:
    out = []
    for rule in quality.min_rows:
        name = f"minRows/{rule.table}"
        if rule.table not in tables:
            out.append(_missing_table(name, rule.table, rule.min))
            continue
        rows = len(tables[rule.table])
        out.append(Check(name, rows >= rule.min, rows, rule.min))
    return out


def check_null_fractions(tables: dict[str, pd.DataFrame], quality: Quality) -> list[Check]:
    out = []
    for rule in quality.max_null_fraction:
        if rule.table not in tables:
            out.append(_missing_table(f"maxNullFraction/{rule.table}.{rule.column}", rule.table, rule.max))
            continue
        frame = tables[rule.table]
        columns = list(frame.columns) if rule.column == "*" else [rule.column]
        if rule.column == "*":
            # One check naming the worst column keeps the result small.
            fractions = frame.isna().mean() if len(frame) else pd.Series(0.0, index=frame.columns)
            worst = str(fractions.idxmax()) if len(fractions) else "-"
            value = float(fractions.max()) if len(fractions) else 0.0
            out.append(Check(f"maxNullFraction/{rule.table}.*({worst})", value <= rule.max, round(value, 6), rule.max))
            continue
        for column in columns:
            name = f"maxNullFraction/{rule.table}.{column}"
            if column not in frame.columns:
                out.append(Check(name, False, f"no column {column!r}", rule.max))
                continue
            value = float(frame[column].isna().mean()) if len(frame) else 0.0
            out.append(Check(name, value <= rule.max, round(value, 6), rule.max))
    return out


def check_schemas(tables: dict[str, pd.DataFrame], quality: Quality) -> list[Check]:
    out = []
    for rule in quality.schema_:
        name = f"schema/{rule.table}"
        expected = ", ".join(f"{c.name}:{c.type}" for c in rule.columns)
        if rule.table not in tables:
            out.append(_missing_table(name, rule.table, expected))
            continue
        actual = {c["name"]: c["type"] for c in schema_of(tables[rule.table])}
        problems = []
        for col in rule.columns:
            if col.name not in actual:
                problems.append(f"missing {col.name}")
            elif col.type != "any" and actual[col.name] not in _FAMILIES[col.type]:
                problems.append(f"{col.name} is {actual[col.name]} not {col.type}")
        if not rule.allow_extra_columns:
            extra = sorted(set(actual) - {c.name for c in rule.columns})
            if extra:
                problems.append(f"unexpected {', '.join(extra)}")
        out.append(Check(name, not problems, "; ".join(problems) or "matches", expected))
    return out


def check_freshness(newest_event: datetime | None, reference: datetime, quality: Quality) -> list[Check]:
    if quality.max_event_age is None:
        return []
    limit = parse_duration(quality.max_event_age)
    if newest_event is None:
        return [Check("maxEventAge", False, "no events", quality.max_event_age)]
    age = reference - newest_event
    hours = age.total_seconds() / 3600
    return [Check("maxEventAge", age <= limit, f"{hours:.2f}h", quality.max_event_age)]


def resolve_unique_keys(tables: dict[str, pd.DataFrame], quality: Quality) -> list[UniqueKey]:
    """The configured keys, or the built-in keys of the built-in tables present."""
    if quality.unique_keys is not None:
        return list(quality.unique_keys)
    return [
        UniqueKey(table=t, columns=cols)
        for t, cols in DEFAULT_KEYS.items()
        if t in tables and all(c in tables[t].columns for c in cols)
    ]


def count_duplicate_keys(frame: pd.DataFrame, columns: list[str]) -> int:
    """Rows whose key repeats an earlier row's key; O(n) when the frame is already sorted by integer keys."""
    if len(frame) < 2:
        return 0
    arrays = [frame[c].to_numpy() for c in columns]
    if all(a.dtype.kind in "iu" for a in arrays):
        same = np.ones(len(frame) - 1, dtype=bool)  # rows equal to their predecessor on all keys so far
        ordered = True
        for a in arrays:
            step = a[1:].astype(np.int64) - a[:-1]
            if np.any(same & (step < 0)):
                ordered = False
                break
            same &= step == 0
        if ordered:
            return int(same.sum())
    return int(frame.duplicated(subset=columns).sum())


def check_unique_keys(tables: dict[str, pd.DataFrame], quality: Quality) -> list[Check]:
    out = []
    for rule in resolve_unique_keys(tables, quality):
        name = f"uniqueKeys/{rule.table}({'+'.join(rule.columns)})"
        if rule.table not in tables:
            out.append(_missing_table(name, rule.table, 0))
            continue
        frame = tables[rule.table]
        missing = [c for c in rule.columns if c not in frame.columns]
        if missing:
            out.append(Check(name, False, f"no column {', '.join(missing)}", 0))
            continue
        dupes = count_duplicate_keys(frame, rule.columns)
        out.append(Check(name, dupes == 0, dupes, 0))
    return out


def evaluate(
    tables: dict[str, pd.DataFrame], quality: Quality, newest_event: datetime | None, freshness_reference: datetime
) -> list[Check]:
    """All gates, in a stable order."""
    return [
        *check_min_rows(tables, quality),
        *check_null_fractions(tables, quality),
        *check_schemas(tables, quality),
        *check_freshness(newest_event, freshness_reference, quality),
        *check_unique_keys(tables, quality),
    ]

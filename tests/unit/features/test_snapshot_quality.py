"""Content digests, manifest statistics, quality gates and the result document (pure)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from recops_features.config import load_config
from recops_features.job import compact_json
from recops_features.quality import count_duplicate_keys, evaluate
from recops_features.snapshot import (
    _should_move_latest,
    build_snapshot,
    column_stats,
    frame_to_arrow,
    schema_of,
    snapshot_version,
    table_digest,
)

WINDOW = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-29T00:00:00Z"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.array([1, 2, 3], dtype=np.int64),
            "score": [0.5, np.nan, 2.0],
            "segment": pd.Series(["a", None, "b"], dtype="string"),
            "band": pd.Categorical(["x", "y", "x"]),
            "ts": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"], utc=True),
            "day": [date(2026, 1, 1), date(2026, 1, 2), None],
            "flag": [True, False, True],
        }
    )


def test_digest_ignores_chunking_and_encoding_but_not_content() -> None:
    frame = _frame()
    table = frame_to_arrow(frame)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    assert table_digest(table) == table_digest(chunked)
    decoded = table.set_column(3, "band", table.column("band").cast(pa.string()))
    assert table_digest(decoded) == table_digest(table)  # dictionary vs plain strings
    changed = frame.copy()
    changed.loc[2, "score"] = 2.0000001
    assert table_digest(frame_to_arrow(changed)) != table_digest(table)
    renamed = frame.rename(columns={"score": "score2"})
    assert table_digest(frame_to_arrow(renamed)) != table_digest(table)
    null_vs_empty = frame.copy()
    null_vs_empty.loc[1, "segment"] = ""
    assert table_digest(frame_to_arrow(null_vs_empty)) != table_digest(table)


def test_version_depends_on_tables_and_window() -> None:
    v = snapshot_version({"a": "1"}, WINDOW)
    assert v == snapshot_version({"a": "1"}, dict(WINDOW)) and len(v) == 64
    assert v != snapshot_version({"a": "2"}, WINDOW)
    assert v != snapshot_version({"a": "1"}, {**WINDOW, "end": "2026-11-30T00:00:00Z"})


def test_build_snapshot_is_deterministic_and_describes_tables() -> None:
    tables = {"users": _frame()}
    a = build_snapshot(tables, {"users": ["user_id"]}, WINDOW, {"pipeline": "p"})
    b = build_snapshot(tables, {"users": ["user_id"]}, WINDOW, {"pipeline": "p"})
    assert a.version == b.version and a.files[0].data == b.files[0].data
    users = a.manifest["tables"]["users"]
    assert users["rows"] == 3 and users["file"] == "users.parquet" and users["keys"] == ["user_id"]
    assert {c["name"]: c["type"] for c in users["schema"]} == {
        "user_id": "int",
        "score": "float",
        "segment": "string",
        "band": "category",
        "ts": "timestamp",
        "day": "date",
        "flag": "bool",
    }
    stats = users["stats"]
    assert stats["user_id"]["kind"] == "key" and stats["user_id"]["distinct"] == 3
    assert stats["segment"]["frequencies"] == {"a": 0.5, "b": 0.5} and stats["segment"]["nulls"] == 1
    json.dumps(a.manifest)  # serialisable


def test_numeric_stats_have_quantile_bins_for_drift() -> None:
    stats = column_stats(pd.Series(np.arange(1000, dtype=float)))
    assert stats["kind"] == "numeric" and len(stats["histogram"]["edges"]) == 11
    assert sum(stats["histogram"]["counts"]) == 1000 and stats["quantiles"]["p50"] == pytest.approx(499.5)
    constant = column_stats(pd.Series([3.0] * 10))
    assert sum(constant["histogram"]["counts"]) == 10


def test_latest_pointer_only_moves_forward() -> None:
    current = json.dumps({"version": "v1", "window": {"end": "2026-11-28T00:00:00Z"}}).encode()
    assert _should_move_latest(None, "v2", WINDOW)
    assert _should_move_latest(current, "v2", WINDOW)
    assert not _should_move_latest(current, "v1", WINDOW)
    assert not _should_move_latest(current, "v0", {"end": "2026-11-20T00:00:00Z"})


def _tables() -> dict[str, pd.DataFrame]:
    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "strength": [1.0, 2.0, 3.0]})
    users = pd.DataFrame({"user_id": [1, 2], "segment": ["a", None]})
    return {"interactions": inter, "users": users}


QUALITY = {"sources": {"events": {"uri": "/x"}}, "window": {"lastDays": 1}, "output": {"uri": "/y"}}


def _quality(**quality: object):  # type: ignore[no-untyped-def]
    return load_config({**QUALITY, "quality": quality}).quality


def test_gates_report_observed_and_threshold() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    quality = _quality(
        minRows=[{"table": "interactions", "min": 4}, {"table": "nope", "min": 1}],
        maxNullFraction=[
            {"table": "users", "column": "segment", "max": "0.2"},
            {"table": "users", "column": "*", "max": "0.6"},
        ],
        schema=[
            {
                "table": "interactions",
                "columns": [{"name": "strength", "type": "int"}, {"name": "gone"}],
                "allowExtraColumns": False,
            }
        ],
        maxEventAge="2h",
    )
    checks = {c.name: c for c in evaluate(_tables(), quality, datetime(2026, 11, 28, 21, tzinfo=UTC), now)}
    assert (checks["minRows/interactions"].passed, checks["minRows/interactions"].observed) == (False, 3)
    assert checks["minRows/nope"].observed == "no table 'nope'"
    assert checks["maxNullFraction/users.segment"].observed == 0.5
    assert checks["maxNullFraction/users.*(segment)"].passed
    schema = checks["schema/interactions"]
    assert not schema.passed and "strength is float not int" in schema.observed and "missing gone" in schema.observed
    assert "unexpected item_id, user_id" in schema.observed
    assert checks["maxEventAge"].observed == "3.00h" and checks["maxEventAge"].threshold == "2h"
    assert checks["uniqueKeys/interactions(user_id+item_id)"].passed


def test_duplicate_keys_sorted_and_unsorted() -> None:
    sorted_frame = pd.DataFrame({"a": [1, 1, 1, 2], "b": [1, 2, 2, 1]})
    assert count_duplicate_keys(sorted_frame, ["a", "b"]) == 1
    unsorted = pd.DataFrame({"a": [2, 1, 2], "b": [1, 1, 1]})
    assert count_duplicate_keys(unsorted, ["a", "b"]) == 1
    assert count_duplicate_keys(pd.DataFrame({"k": ["x", "y", "x"]}), ["k"]) == 1


def test_unique_keys_can_be_disabled_or_custom() -> None:
    tables = _tables()
    tables["interactions"] = pd.concat([tables["interactions"], tables["interactions"].head(1)])
    now = datetime(2026, 11, 29, tzinfo=UTC)
    assert any(not c.passed for c in evaluate(tables, _quality(), now, now))
    assert all(c.passed for c in evaluate(tables, _quality(uniqueKeys=[]), now, now))


def test_result_is_compacted_below_4_kib() -> None:
    quality = [
        {"name": f"maxNullFraction/t.c{i}", "passed": i != 7, "observed": 0.1, "threshold": 0.2} for i in range(200)
    ]
    text = compact_json({"ok": False, "reason": "QualityGateFailed", "message": "m", "quality": quality})
    doc = json.loads(text)
    assert len(text) <= 4000 and doc["quality"] == [quality[7]] and doc["qualityOmittedPassed"] == 199


def test_schema_of_reports_type_families() -> None:
    assert schema_of(pd.DataFrame({"x": [1.5]})) == [{"name": "x", "type": "float"}]

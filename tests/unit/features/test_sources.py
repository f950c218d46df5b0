"""Parsing and normalising input files (bytes in, tables out: no IO)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest
from recops_features.errors import InvalidInput
from recops_features.sources import (
    file_format,
    filter_window,
    normalise_events,
    parse_table,
    to_pandas_events,
    window_dates,
)
from recops_features.storage import parse_location


def test_file_format_by_extension() -> None:
    assert file_format("a/date=2026-11-01/part-0.parquet") == "parquet"
    assert file_format("x.jsonl.gz") == "jsonl" and file_format("x.json") == "jsonl"
    assert file_format("_SUCCESS") is None and file_format(".part.tmp") is None and file_format("x.csv") is None
    assert file_format("x.data", "jsonl") == "jsonl"


def test_jsonl_with_iso_and_epoch_times() -> None:
    data = (
        b'{"user_id": 1, "item_id": 2, "event_type": "view", "ts": "2026-11-20T10:00:00.123Z"}\n'
        b'{"user_id": 1, "item_id": 3, "event_type": "purchase", "ts": "2026-11-20T11:00:00Z", "price": 5}\n'
    )
    table = normalise_events(parse_table(data, "f.jsonl", "jsonl", "field"), "f.jsonl")
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("ts").to_pylist()[0] == datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)
    epoch = b'{"user_id": 1, "item_id": 2, "event_type": "view", "ts": 1795608000000}\n'
    t2 = normalise_events(parse_table(epoch, "e.jsonl", "jsonl", "field"), "e.jsonl")
    assert t2.column("ts").to_pylist()[0] == pd.Timestamp(1795608000000, unit="ms", tz="UTC").to_pydatetime()


def test_malformed_line_is_named() -> None:
    data = b'{"user_id": 1}\n{"user_id": 2}\n{"user_id": \n'
    with pytest.raises(InvalidInput, match="line 3") as err:
        parse_table(data, "s3://b/e/date=2026-11-20/p.jsonl", "jsonl", "sources.events.uri")
    assert err.value.reason == "MalformedInput" and "sources.events.uri" in err.value.message


def test_not_parquet_is_named() -> None:
    with pytest.raises(InvalidInput, match="not a readable Parquet"):
        parse_table(b"garbage", "x.parquet", "parquet", "f")


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"user_id": [1], "event_type": ["view"], "ts": ["2026-11-20T00:00:00Z"]}), "item_id"),
        (
            pd.DataFrame({"user_id": [1.5], "item_id": [1], "event_type": ["view"], "ts": ["2026-11-20T00:00:00Z"]}),
            "fractional",
        ),
        (pd.DataFrame({"user_id": [1], "item_id": [1], "event_type": ["view"], "ts": ["not a time"]}), "ts"),
        (
            pd.DataFrame({"user_id": [1], "item_id": [1], "event_type": [3], "ts": ["2026-11-20T00:00:00Z"]}),
            "event_type",
        ),
    ],
)
def test_wrong_schema_is_named(frame: pd.DataFrame, match: str) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    table = parse_table(buf.getvalue(), "f.parquet", "parquet", "f")
    with pytest.raises(InvalidInput, match=match):
        normalise_events(table, "f.parquet")


def test_window_filter_and_dates() -> None:
    assert window_dates(datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)) == [
        "2026-11-01",
        "2026-11-02",
    ]
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "item_id": [1, 2, 3],
            "event_type": ["view"] * 3,
            "ts": pd.to_datetime(["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"], utc=True),
        }
    )
    table = normalise_events(pa.Table.from_pandas(frame), "f")
    kept = filter_window(table, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert kept.column("item_id").to_pylist() == [1, 2]
    events = to_pandas_events(kept)
    assert isinstance(events["event_type"].dtype, pd.CategoricalDtype)


def test_locations() -> None:
    loc = parse_location("s3://bucket/a/b/")
    assert (loc.scheme, loc.bucket, loc.path) == ("s3", "bucket", "a/b")
    assert loc.child("v1", "m.json").uri == "s3://bucket/a/b/v1/m.json"
    assert parse_location("/tmp/x").scheme == "file" and parse_location("file:///tmp/x").path == "/tmp/x"
    with pytest.raises(InvalidInput):
        parse_location("gs://bucket/x")
    with pytest.raises(InvalidInput):
        parse_location("s3:///nobucket")


def test_s3_errors_map_to_exit_codes_without_secrets() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    from recops_features.errors import DependencyUnavailable
    from recops_features.storage import _s3_error

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    cases = [
        (EndpointConnectionError(endpoint_url="http://10.0.0.1:9000"), DependencyUnavailable, "S3Unavailable"),
        (NoCredentialsError(), InvalidInput, "S3CredentialsMissing"),
        (client_error("NoSuchBucket", 404), InvalidInput, "BucketNotFound"),
        (client_error("AccessDenied", 403), InvalidInput, "S3AccessDenied"),
        (client_error("SlowDown", 503), DependencyUnavailable, "S3Unavailable"),
        (client_error("InternalError", 500), DependencyUnavailable, "S3Unavailable"),
    ]
    for exc, kind, reason in cases:
        err = _s3_error(exc, "the clickstream s3://b/e", "sources.events.uri")
        assert isinstance(err, kind) and err.reason == reason  # type: ignore[attr-defined]
        assert "sources.events.uri" in err.message  # type: ignore[attr-defined]
    assert _s3_error(ValueError("x"), "w", "f").__class__ is ValueError

"""Reading the job's inputs: the clickstream window, the item catalogue and user profiles.

Every problem becomes a :class:`~recops_features.errors.JobError` whose message names the input
(URI, file, line, column or table) and the fix; credentials never appear in messages.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recops_features.errors import DependencyUnavailable, InvalidInput
from recops_features.logs import log
from recops_features.storage import LocalStore, Location, S3Store, parse_location, store_for

REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "ts")
OPTIONAL_EVENT_COLUMNS = ("event_id", "session_id", "price")
_PARQUET_EXT = (".parquet", ".parq", ".pq")
_JSON_EXT = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")


@dataclass
class EventsRead:
    """The events of the window and where they came from."""

    frame: pd.DataFrame
    files: list[str]
    rows_read: int


# ----------------------------------------------------------------------------- file parsing (pure)


def file_format(name: str, configured: str = "auto") -> str | None:
    """``parquet``/``jsonl`` for a data file name, ``None`` for files to skip (``_SUCCESS``, dotfiles)."""
    base = name.rsplit("/", 1)[-1].lower()
    if base.startswith((".", "_")):
        return None
    if configured != "auto":
        return configured
    if base.endswith(_PARQUET_EXT):
        return "parquet"
    if base.endswith(_JSON_EXT):
        return "jsonl"
    return None


def _first_bad_json_line(data: bytes) -> tuple[int, str]:
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            return number, str(exc)
        if not isinstance(value, dict):
            return number, "not a JSON object"
    return 0, "unknown"


def parse_table(data: bytes, name: str, fmt: str, field: str) -> pa.Table:
    """Parse one Parquet or JSON-lines file into an Arrow table (``InvalidInput`` naming the file/line)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except OSError as exc:
            raise InvalidInput(
                "MalformedInput", f"{name} ({field}) is not valid gzip: {exc}; rewrite the file."
            ) from exc
    if fmt == "parquet":
        try:
            return pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(
                "MalformedInput", f"{name} ({field}) is not a readable Parquet file: {exc}; rewrite or remove it."
            ) from exc
    if not data.strip():
        return pa.table({})
    try:
        return pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=1 << 24))
    except (pa.ArrowInvalid, ValueError) as exc:
        line, why = _first_bad_json_line(data)
        where = f"line {line}" if line else "a line"
        raise InvalidInput(
            "MalformedInput",
            f"{name} ({field}) has malformed JSON at {where}: {why}; fix or remove the line "
            "(one JSON object per line).",
        ) from exc


def _timestamp_column(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """Normalise ``ts`` (timestamp, ISO-8601 string or epoch seconds/ms/us) to timestamp[us, UTC]."""
    target = pa.timestamp("us", tz="UTC")
    kind = column.type
    try:
        if pa.types.is_timestamp(kind):
            if kind.tz is None:
                column = column.cast(pa.timestamp(kind.unit))
                return pc.assume_timezone(column, "UTC").cast(target)
            return column.cast(target)
        if pa.types.is_date(kind):
            return column.cast(pa.timestamp("us")).cast(target)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            parsed = pd.to_datetime(column.to_pandas(), utc=True, format="ISO8601")
            return pa.chunked_array([pa.array(parsed.array.as_unit("us"), type=target)])
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = column.to_numpy().astype(np.float64)
            top = np.nanmax(np.abs(values)) if len(values) else 0
            scale = 1_000_000 if top < 1e11 else 1_000 if top < 1e14 else 1
            return pa.chunked_array([pa.array((values * scale).astype(np.int64), type=target)])
    except (pa.ArrowInvalid, ValueError, TypeError) as exc:
        raise InvalidInput(
            "InvalidSchema", f"{name}: column ts has values that are not times ({exc}); write ISO-8601 or epoch times."
        ) from exc
    raise InvalidInput("InvalidSchema", f"{name}: column ts has type {kind}; expected a timestamp or ISO-8601 string.")


def normalise_events(table: pa.Table, name: str) -> pa.Table:
    """Check and coerce one events file to the canonical schema (``InvalidInput`` naming the column)."""
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise InvalidInput(
            "InvalidSchema",
            f"{name} lacks column(s) {', '.join(missing)} (has {', '.join(table.column_names) or 'none'}); events "
            f"need {', '.join(REQUIRED_EVENT_COLUMNS)}.",
        )
    columns: dict[str, pa.ChunkedArray] = {}
    for col in table.column_names:
        data = table.column(col)
        kind = data.type
        if col in ("user_id", "item_id", "session_id", "event_id"):
            if pa.types.is_integer(kind):
                data = data.cast(pa.int64())
            elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
                data = data.cast(pa.string())
            elif pa.types.is_floating(kind) and col != "event_id":
                values = data.to_numpy()
                if not np.all(np.isnan(values) | (values == np.round(values))):
                    raise InvalidInput(
                        "InvalidSchema", f"{name}: column {col} has fractional ids; ids must be integers."
                    )
                data = data.cast(pa.int64(), safe=False)
            else:
                raise InvalidInput(
                    "InvalidSchema", f"{name}: column {col} has type {kind}; expected integer or string ids."
                )
            if data.null_count and col in ("user_id", "item_id"):
                raise InvalidInput(
                    "InvalidSchema",
                    f"{name}: column {col} has {data.null_count} null value(s); "
                    "every event needs a user_id and an item_id.",
                )
        elif col == "event_type":
            if pa.types.is_dictionary(kind):
                data = data.cast(pa.string())
            elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise InvalidInput("InvalidSchema", f"{name}: column event_type has type {kind}; expected strings.")
            data = data.cast(pa.string())
        elif col == "ts":
            data = _timestamp_column(data, name)
            if data.null_count:
                raise InvalidInput("InvalidSchema", f"{name}: column ts has {data.null_count} null value(s).")
        elif col == "price":
            if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
                raise InvalidInput("InvalidSchema", f"{name}: column price has type {kind}; expected numbers.")
            data = data.cast(pa.float64())
        columns[col] = data
    return pa.table(columns)


def filter_window(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """Rows with ``start <= ts < end``."""
    ts = table.column("ts")
    lo = pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
    mask = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))
    return table.filter(mask)


def window_dates(start: datetime, end: datetime) -> list[str]:
    """``YYYY-MM-DD`` of every UTC day overlapping ``[start, end)``."""
    days: list[str] = []
    day = start.date()
    last = (end - timedelta(microseconds=1)).date()
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def to_pandas_events(table: pa.Table) -> pd.DataFrame:
    """Arrow events -> pandas with ``event_type`` as a categorical (cheap codes for the transform)."""
    if table.num_columns and "event_type" in table.column_names:
        idx = table.column_names.index("event_type")
        table = table.set_column(idx, "event_type", pc.dictionary_encode(table.column("event_type")))
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    if "event_type" in frame.columns and not isinstance(frame["event_type"].dtype, pd.CategoricalDtype):
        frame["event_type"] = frame["event_type"].astype("category")
    return frame


# ----------------------------------------------------------------------------- IO


def _read_many(store: S3Store | LocalStore, loc: Location, keys: list[str]) -> list[bytes]:
    if isinstance(store, LocalStore) or len(keys) <= 1:
        return [store.read(loc, k) for k in keys]
    with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
        return list(pool.map(lambda k: store.read(loc, k), keys))


def read_events(uri: str, fmt: str, start: datetime, end: datetime, client: object | None = None) -> EventsRead:
    """Read ``<uri>/date=YYYY-MM-DD/*`` for the window's days, keep ``start <= ts < end``."""
    field = "sources.events.uri"
    root = parse_location(uri)
    store = store_for(root, what=f"the clickstream {root.uri}", field=field, client=client)
    if isinstance(store, S3Store):
        store.check_bucket(root)
    elif not os.path.isdir(root.path):
        raise InvalidInput(
            "InputNotFound",
            f"The clickstream directory {root.path} does not exist ({field}); fix the path or generate data first.",
        )
    files: list[str] = []
    for day in window_dates(start, end):
        part = root.child(f"date={day}")
        if isinstance(store, LocalStore) and not os.path.isdir(part.path):
            continue
        files.extend(k for k in store.keys(part) if file_format(k, fmt))
    if not files:
        raise InvalidInput(
            "EmptyWindow",
            f"No event files for {start.isoformat()} .. {end.isoformat()} under {root.uri}/date=YYYY-MM-DD/ "
            f"({field}); check the URI and the window (window.lastDays / start / end).",
        )
    blobs = _read_many(store, root, files)
    tables: list[pa.Table] = []
    rows_read = 0
    for key, blob in zip(files, blobs, strict=True):
        name = key if isinstance(store, LocalStore) else f"s3://{root.bucket}/{key}"
        table = parse_table(blob, name, file_format(key, fmt) or "parquet", field)
        if table.num_rows == 0:
            continue
        rows_read += table.num_rows
        tables.append(filter_window(normalise_events(table, name), start, end))
    del blobs
    if not tables or sum(t.num_rows for t in tables) == 0:
        raise InvalidInput(
            "EmptyWindow",
            f"No events between {start.isoformat()} and {end.isoformat()} in {len(files)} file(s) under {root.uri} "
            f"({field}); check the window (lastDays / start / end) and that the clickstream is being written.",
        )
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput("InvalidSchema", f"Event files under {root.uri} disagree on column types: {exc}.") from exc
    log("Read events", uri=root.uri, files=len(files), rows_read=rows_read, rows_in_window=table.num_rows)
    return EventsRead(frame=to_pandas_events(table), files=files, rows_read=rows_read)


def read_file_frame(uri: str, field: str, key_column: str, client: object | None = None) -> pd.DataFrame:
    """Read a Parquet/JSON-lines file (or all files under a prefix) that must have ``key_column``."""
    loc = parse_location(uri)
    store = store_for(loc, what=uri, field=field, client=client)
    if isinstance(store, S3Store):
        store.check_bucket(loc)
    keys = [k for k in store.keys(loc) if file_format(k)]
    if not keys:
        raise InvalidInput("InputNotFound", f"No Parquet or JSON-lines file at {loc.uri} ({field}); fix the URI.")
    tables = []
    for key, blob in zip(keys, _read_many(store, loc, keys), strict=True):
        name = key if isinstance(store, LocalStore) else f"s3://{loc.bucket}/{key}"
        tables.append(parse_table(blob, name, file_format(key) or "parquet", field))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            "InvalidSchema", f"Files under {loc.uri} ({field}) disagree on column types: {exc}."
        ) from exc
    if key_column not in table.column_names:
        raise InvalidInput(
            "InvalidSchema", f"{loc.uri} ({field}) has no {key_column} column (has {', '.join(table.column_names)})."
        )
    frame = table.to_pandas()
    log("Read file input", uri=loc.uri, field=field, files=len(keys), rows=len(frame))
    return frame


def read_profiles_postgres(table: str, columns: list[str] | None, dsn: str | None) -> pd.DataFrame:
    """``SELECT`` the profile columns via ``COPY ... TO STDOUT`` (fast), typed by PostgreSQL's own types."""
    field = "sources.profiles.table"
    if not dsn:
        raise InvalidInput(
            "PostgresDsnMissing",
            f"Profiles come from PostgreSQL table {table} ({field}) but env RECOPS_POSTGRES_DSN is not set; "
            "reference the database Secret in the pipeline.",
        )
    import psycopg
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    try:
        conn = psycopg.connect(dsn, connect_timeout=int(os.environ.get("RECOPS_POSTGRES_CONNECT_TIMEOUT", "10")))
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(
            "InvalidPostgresDsn",
            "RECOPS_POSTGRES_DSN is not a valid PostgreSQL connection string; fix the database Secret.",
        ) from exc
    except psycopg.OperationalError as exc:
        text = str(exc).lower()
        if (
            "password authentication failed" in text
            or ("role" in text and "does not exist" in text)
            or ("database" in text and "does not exist" in text)
        ):
            raise InvalidInput(
                "PostgresAuthFailed",
                "PostgreSQL refused the login or database of RECOPS_POSTGRES_DSN; "
                "check the user, password and database in the Secret.",
            ) from exc
        raise DependencyUnavailable(
            "PostgresUnavailable",
            "Could not connect to PostgreSQL (RECOPS_POSTGRES_DSN): "
            "the server is unreachable or not accepting connections; retry later.",
        ) from exc
    try:
        with conn, conn.cursor() as cur:
            try:
                if columns:
                    wanted = ["user_id", *[c for c in columns if c != "user_id"]]
                    select = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, wanted)), ident)
                else:
                    select = sql.SQL("SELECT * FROM {}").format(ident)
                cur.execute(sql.SQL("{} LIMIT 0").format(select))
            except psycopg.errors.UndefinedTable as exc:
                raise InvalidInput(
                    "ProfilesTableNotFound",
                    f"PostgreSQL has no table {table} ({field}); create it or fix the table name.",
                ) from exc
            except psycopg.errors.UndefinedColumn as exc:
                raise InvalidInput(
                    "InvalidSchema",
                    f"PostgreSQL table {table} ({field}): {exc.diag.message_primary}; fix sources.profiles.columns.",
                ) from exc
            names = [d.name for d in cur.description or []]
            if "user_id" not in names:
                raise InvalidInput("InvalidSchema", f"PostgreSQL table {table} ({field}) has no user_id column.")
            type_names = _pg_type_names(conn, [d.type_code for d in cur.description or []])
            buf = io.BytesIO()
            with cur.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(select)) as copy:
                for block in copy:
                    buf.write(block)
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable(
            "PostgresUnavailable", f"Lost the PostgreSQL connection while reading {table}; retry later."
        ) from exc
    frame = _csv_to_frame(buf.getvalue(), names, type_names)
    log("Read profiles", table=table, rows=len(frame), columns=len(names))
    return frame


def _pg_type_names(conn: object, oids: list[int]) -> list[str]:
    from psycopg.types import TypeInfo  # noqa: F401  (keeps psycopg's adapters loaded)

    registry = conn.adapters.types  # type: ignore[attr-defined]
    out = []
    for oid in oids:
        info = registry.get(oid)
        out.append(info.name if info is not None else "text")
    return out


_PG_NUMERIC = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "numeric": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
}


def _csv_to_frame(data: bytes, names: list[str], type_names: list[str]) -> pd.DataFrame:
    import pyarrow.csv as pcsv

    types = {n: _PG_NUMERIC.get(t, pa.string()) for n, t in zip(names, type_names, strict=True)}
    convert = pcsv.ConvertOptions(
        column_types=types,
        true_values=["t", "true"],
        false_values=["f", "false"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = pcsv.read_csv(io.BytesIO(data), convert_options=convert)
    return table.to_pandas()


def read_profiles(
    table: str | None, uri: str | None, columns: list[str] | None, client: object | None = None
) -> pd.DataFrame:
    """Profiles from PostgreSQL (``table``) or a file (``uri``), with ``user_id`` plus ``columns``."""
    if table:
        return read_profiles_postgres(table, columns, os.environ.get("RECOPS_POSTGRES_DSN"))
    frame = read_file_frame(uri or "", "sources.profiles.uri", "user_id", client=client)
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InvalidInput(
                "InvalidSchema", f"Profiles file {uri} lacks column(s) {', '.join(missing)} (sources.profiles.columns)."
            )
        frame = frame[["user_id", *[c for c in columns if c != "user_id"]]]
    return frame

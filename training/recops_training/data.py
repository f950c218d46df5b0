"""Reading a feature snapshot and turning it into training matrices and a temporal holdout.

A snapshot (see ``recops_features``) is an immutable directory or S3 prefix: Parquet tables plus
``manifest.json`` (written last; its ``version`` is the content digest). ``snapshot.uri`` may point
at the snapshot itself or at the pipeline's output root, in which case ``latest.json`` names it.

What training reads:

- ``events`` (optional, best): one row per event, ``user_id, item_id, ts`` (+ ``event_type``,
  ``weight``). Gives an exact temporal holdout.
- ``interactions`` (otherwise): one row per (user, item), ``user_id, item_id, strength`` and the
  event times ``first_ts`` and ``last_ts`` (also accepted: ``first_event_ts``/``first_seen``,
  ``last_event_ts``/``last_seen``). A pair is in training when its first event precedes the cut and
  relevant in the test period when its last event is at or after the cut (a repeat when both).
  With only ``last_ts`` every test pair is "new" and the repeat variant equals the new one.
- ``items`` (optional): ``item_id, category`` for the model's item categories.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DependencyUnavailable, InvalidInput
from .evaluation import Holdout

TS_EVENT = ("ts", "timestamp", "event_time", "event_ts", "time")
TS_FIRST = ("first_ts", "first_event_ts", "first_seen", "first_interaction_ts", "first_event_time")
TS_LAST = ("last_ts", "last_event_ts", "last_seen", "last_interaction_ts", "last_event_time", "ts")
STRENGTH = ("strength", "weight", "score", "rating")
WEIGHTINGS = ("binary", "strength", "log1p")


@dataclass
class Snapshot:
    """A loaded snapshot: its manifest and the frames training needs."""

    uri: str
    version: str
    digest: str
    manifest: dict[str, Any]
    pairs: pd.DataFrame  # user_id, item_id, weight, first_ts, last_ts (UTC datetimes, may be NaT)
    granularity: str  # "events" | "pairs" | "pairs-last-only"
    items: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# locating and fetching
# ----------------------------------------------------------------------------------------------


def _s3_split(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


@contextmanager
def local_snapshot_dir(uri: str) -> Iterator[Path]:
    """A local directory holding the snapshot: the path itself, or a temp copy of an S3 prefix."""
    if not uri.startswith("s3://"):
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
        if (path / "manifest.json").is_file():
            yield path
            return
        if (path / "latest.json").is_file():
            latest = json.loads((path / "latest.json").read_text())
            ref = latest.get("uri") or latest.get("path") or latest.get("version")
            cand = Path(ref) if ref and Path(ref).is_absolute() else path / str(ref)
            if (cand / "manifest.json").is_file():
                yield cand
                return
        raise InvalidInput(
            f"snapshot.uri {uri!r} has no manifest.json (nor a latest.json naming a snapshot): the snapshot is "
            "missing or was never completely published; run the FeaturePipeline or fix the uri",
            reason="SnapshotNotFound",
        )
    tmp = Path(tempfile.mkdtemp(prefix="recops-snapshot-"))
    try:
        yield _download_s3(uri, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_s3(uri: str, tmp: Path) -> Path:
    import boto3
    import botocore.exceptions as bex

    bucket, prefix = _s3_split(uri)
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)

    def get(key: str) -> bytes | None:
        try:
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            raise

    try:
        base = prefix
        manifest = get(f"{base}/manifest.json" if base else "manifest.json")
        if manifest is None:
            latest = get(f"{base}/latest.json" if base else "latest.json")
            if latest is not None:
                ref = json.loads(latest)
                ver = str(ref.get("version") or "")
                target = str(ref.get("uri") or "")
                base = _s3_split(target)[1] if target.startswith("s3://") else f"{prefix}/{ver}".strip("/")
                manifest = get(f"{base}/manifest.json")
        if manifest is None:
            raise InvalidInput(
                f"snapshot.uri {uri!r} has no manifest.json (nor a latest.json naming a snapshot): the snapshot "
                "is missing or was never completely published; run the FeaturePipeline or fix the uri",
                reason="SnapshotNotFound",
            )
        (tmp / "manifest.json").write_bytes(manifest)
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}/"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                rel = key[len(base) + 1 :]
                if rel.endswith(".parquet") and ".." not in rel.split("/"):
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, key, str(dest))
        return tmp
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
        raise DependencyUnavailable(
            f"S3 endpoint was unreachable while reading snapshot.uri: {exc}", reason="S3Unavailable"
        ) from exc
    except bex.NoCredentialsError as exc:
        raise InvalidInput(
            "S3 credentials are missing: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", reason="S3Credentials"
        ) from exc


def _table(dirpath: Path, name: str) -> pd.DataFrame | None:
    for cand in (dirpath / f"{name}.parquet", dirpath / name):
        if cand.exists():
            return pd.read_parquet(cand)
    return None


def _pick(cols: Any, names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in cols:
            return n
    return None


def _utc(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s):
        unit = "ms" if s.dropna().abs().max() > 1e11 else "s"
        return pd.to_datetime(s, unit=unit, utc=True)
    return pd.to_datetime(s, utc=True)


def load_snapshot(uri: str, expected_version: str | None = None) -> Snapshot:
    """Load a snapshot (local directory or S3 prefix) into a :class:`Snapshot`."""
    with local_snapshot_dir(uri) as d:
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except ValueError as exc:
            raise InvalidInput(
                f"snapshot manifest.json at {uri!r} is not valid JSON: {exc}", reason="InvalidSnapshot"
            ) from exc
        version = str(manifest.get("version") or manifest.get("digest") or "")
        digest = str(manifest.get("digest") or manifest.get("contentDigest") or manifest.get("version") or "")
        if expected_version and expected_version not in (version, digest):
            raise InvalidInput(
                f"snapshot.version is {expected_version!r} but the snapshot at {uri!r} has version {version!r}; "
                "point snapshot.uri at that version's directory or drop snapshot.version",
                reason="SnapshotVersionMismatch",
            )
        events = _table(d, "events")
        inter = _table(d, "interactions")
        items = _table(d, "items")
    notes: list[str] = []
    if events is not None and {"user_id", "item_id"} <= set(events.columns) and _pick(events.columns, TS_EVENT):
        pairs, granularity = _pairs_from_events(events), "events"
    elif inter is not None and {"user_id", "item_id"} <= set(inter.columns):
        pairs, granularity = _pairs_from_interactions(inter, notes)
    else:
        raise InvalidInput(
            f"snapshot at {uri!r} has neither an 'events' table (user_id, item_id, ts) nor an 'interactions' "
            "table (user_id, item_id, strength, first_ts, last_ts); re-run the FeaturePipeline with the builtin "
            "transform",
            reason="InvalidSnapshot",
        )
    if pairs.empty:
        raise InvalidInput(f"snapshot at {uri!r} holds no interactions", reason="EmptySnapshot")
    return Snapshot(
        uri=uri,
        version=version,
        digest=digest,
        manifest=manifest,
        pairs=pairs,
        granularity=granularity,
        items=items,
        notes=notes,
    )


def _pairs_from_events(ev: pd.DataFrame) -> pd.DataFrame:
    tcol = _pick(ev.columns, TS_EVENT)
    wcol = _pick(ev.columns, STRENGTH)
    df = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).to_numpy(),
            "item_id": ev["item_id"].astype(str).to_numpy(),
            "ts": _utc(ev[tcol]).to_numpy(),
            "weight": ev[wcol].astype("float32").to_numpy() if wcol else np.ones(len(ev), np.float32),
        }
    )
    return df.rename(columns={"ts": "first_ts"}).assign(last_ts=lambda f: f["first_ts"])


def _pairs_from_interactions(it: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, str]:
    wcol = _pick(it.columns, STRENGTH)
    if wcol is None:
        count_cols = [c for c in it.columns if c.endswith("_count") or c.startswith("n_")]
        weight = it[count_cols].sum(axis=1).astype("float32") if count_cols else pd.Series(np.ones(len(it), np.float32))
        notes.append("interactions has no strength column: used " + (", ".join(count_cols) or "1 per pair"))
    else:
        weight = it[wcol].astype("float32")
    first_col = _pick(it.columns, TS_FIRST)
    last_col = _pick(it.columns, TS_LAST)
    df = pd.DataFrame(
        {
            "user_id": it["user_id"].astype(str).to_numpy(),
            "item_id": it["item_id"].astype(str).to_numpy(),
            "weight": weight.to_numpy(),
        }
    )
    if last_col is None:
        raise InvalidInput(
            "snapshot table 'interactions' has no event time column (expected first_ts and last_ts, or an 'events' "
            "table with ts): a temporal holdout needs them; add them to the FeaturePipeline output",
            reason="InvalidSnapshot",
        )
    df["last_ts"] = _utc(it[last_col]).to_numpy()
    if first_col is not None:
        df["first_ts"] = _utc(it[first_col]).to_numpy()
        return df, "pairs"
    notes.append(
        f"interactions has no first-event time: pairs split by {last_col}; the repeat variant equals the new one"
    )
    df["first_ts"] = df["last_ts"]
    return df, "pairs-last-only"


# ----------------------------------------------------------------------------------------------
# matrices
# ----------------------------------------------------------------------------------------------


def apply_weighting(X: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sum_duplicates()
    X.data = np.maximum(X.data, 0)
    X.eliminate_zeros()
    if weighting == "binary":
        X.data = np.ones_like(X.data)
    elif weighting == "log1p":
        X.data = np.log1p(X.data).astype(np.float32)
    elif weighting != "strength":
        raise InvalidInput(f"weighting {weighting!r} is not one of {', '.join(WEIGHTINGS)}")
    return X


def build_matrix(pairs: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray, weighting: str) -> sp.csr_matrix:
    """(len(user_ids) x len(item_ids)) matrix of summed weights; rows of unknown ids are dropped.
    ``user_ids`` and ``item_ids`` must be sorted."""
    u = pairs["user_id"].to_numpy(dtype=str)
    i = pairs["item_id"].to_numpy(dtype=str)
    ui = np.searchsorted(user_ids, u)
    ii = np.searchsorted(item_ids, i)
    ok = (ui < len(user_ids)) & (ii < len(item_ids))
    ok[ok] &= (user_ids[ui[ok]] == u[ok]) & (item_ids[ii[ok]] == i[ok])
    w = pairs["weight"].to_numpy(dtype=np.float32)[ok]
    if weighting == "binary":
        w = np.ones_like(w)
    X = sp.csr_matrix((w, (ui[ok], ii[ok])), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    return apply_weighting(X, weighting)


def item_categories(item_ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    cats = np.full(len(item_ids), "unknown", dtype=object)
    if items is not None and {"item_id", "category"} <= set(items.columns):
        m = items.drop_duplicates("item_id").set_index(items.drop_duplicates("item_id")["item_id"].astype(str))[
            "category"
        ]
        found = pd.Series(item_ids).map(m)
        cats = np.where(found.isna(), "unknown", found.astype(str)).astype(object)
    return cats.astype(str)


def normalise_ids(pairs: pd.DataFrame) -> pd.DataFrame:
    """User and item ids as strings (the model format's ids are strings)."""
    if all(pd.api.types.is_string_dtype(pairs[c]) or pairs[c].dtype == object for c in ("user_id", "item_id")):
        return pairs
    return pairs.assign(user_id=pairs["user_id"].astype(str), item_id=pairs["item_id"].astype(str))


def full_data(snap: Snapshot, weighting: str) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The whole snapshot as one matrix (for the model that is registered)."""
    snap.pairs = normalise_ids(snap.pairs)
    user_ids = np.unique(snap.pairs["user_id"].to_numpy(dtype=str))
    item_ids = np.unique(snap.pairs["item_id"].to_numpy(dtype=str))
    return build_matrix(snap.pairs, user_ids, item_ids, weighting), user_ids, item_ids


def temporal_holdout(snap: Snapshot, holdout_days: float, weighting: str) -> Holdout:
    """Split at ``max(event time) - holdout_days``: training = before the cut, test = at or after,
    users = those with activity before the cut, catalogue = items seen before the cut."""
    from .algorithms import item_popularity

    p = normalise_ids(snap.pairs)
    end = p["last_ts"].max()
    cut = end - pd.Timedelta(days=holdout_days)
    train = p[p["first_ts"] < cut]
    test = p[p["last_ts"] >= cut]
    if train.empty or test.empty:
        raise InvalidInput(
            f"evaluation.holdoutDays={holdout_days} leaves {'no training' if train.empty else 'no test'} data "
            f"(events span {p['first_ts'].min()} .. {end}); choose a holdout shorter than the snapshot's window",
            reason="EmptyHoldout",
        )
    user_ids = np.unique(train["user_id"].to_numpy(dtype=str))
    item_ids = np.unique(train["item_id"].to_numpy(dtype=str))
    X_train = build_matrix(train, user_ids, item_ids, weighting)
    test = test[test["user_id"].isin(pd.Index(user_ids))]
    tp = test[["user_id", "item_id"]].drop_duplicates()
    # relevant counts include items outside the training catalogue (honest recall)
    trained_pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]].drop_duplicates())
    is_repeat = pd.MultiIndex.from_frame(tp).isin(trained_pairs)
    n_users = len(user_ids)
    urow_all = np.searchsorted(user_ids, tp["user_id"].to_numpy(dtype=str))
    n_rel_all = np.bincount(urow_all, minlength=n_users).astype(np.int64)
    n_rel_new = np.bincount(urow_all[~is_repeat], minlength=n_users).astype(np.int64)
    ones = tp.assign(weight=np.float32(1))
    test_all = build_matrix(ones, user_ids, item_ids, "binary")
    test_new = build_matrix(ones[~is_repeat], user_ids, item_ids, "binary")
    return Holdout(
        X_train=X_train,
        test_all=test_all,
        n_rel_all=n_rel_all,
        test_new=test_new,
        n_rel_new=n_rel_new,
        user_ids=user_ids,
        item_ids=item_ids,
        popularity=item_popularity(X_train),
        cut=cut.isoformat(),
    )

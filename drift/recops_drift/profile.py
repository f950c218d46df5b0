"""Reference profiles from the documents other components write.

Three inputs become one :class:`~recops_drift.stats.ReferenceProfile`:

* our own format (``"format": "recops.dev/reference-profile"``): exact sorted samples or sketches,
  quantile bins, category counts, optionally an item lookup; written by :func:`build_reference_profile`
  (what the TrainingRun should log as ``reference_profile.json``);
* the TrainingRun's ``"kind": "RecopsReferenceProfile"`` document: the snapshot manifest's statistics
  plus ``predictions`` (``categoryShare``, ``recommendedPopularity`` quantiles) -> ``output.category``
  and ``output.popularity``;
* a feature snapshot ``manifest.json``: per-column statistics -> ``<table>.<column>`` features.

Statistics given only as quantiles become *sketch* profiles: the quantile function interpolated
linearly between the known points (KS is then approximate, flagged ``exact: false``), bins at the
known quantiles with their exact reference proportions (PSI / Jensen-Shannon are as good as the
quantiles).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import stats as S

SKETCH_POINTS = 1001
SHARE_ROUNDING = 1e-3
"""Slack for rounded shares that sum to a little more than 1 (see :func:`categorical_from_counts`)."""


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _quantile_pairs(raw: Any) -> list[tuple[float, float]]:
    """``{"0.1": v, ...}``, ``{"p10": v}``, ``[[0.1, v], ...]`` or ``[{"q": 0.1, "value": v}]`` -> pairs."""
    pairs: list[tuple[float, float]] = []
    items: Iterable[Any]
    if isinstance(raw, Mapping):
        items = raw.items()
    elif isinstance(raw, list):
        items = raw
    else:
        return pairs
    for item in items:
        if isinstance(item, Mapping):
            level, value = item.get("q", item.get("quantile", item.get("level"))), item.get("value")
        else:
            level, value = item[0], item[1]
        text = str(level).strip().lower()
        if text in ("min",):
            text = "0"
        elif text in ("max",):
            text = "1"
        elif text in ("median",):
            text = "0.5"
        elif text.startswith("p") and text[1:].replace(".", "", 1).isdigit():
            text = str(float(text[1:]) / 100.0)
        lv, vv = _num(text), _num(value)
        if lv is not None and vv is not None and 0.0 <= lv <= 1.0:
            pairs.append((lv, vv))
    return sorted(pairs)


def numeric_from_quantiles(
    name: str,
    pairs: list[tuple[float, float]],
    *,
    count: int,
    null_count: int = 0,
    minimum: float | None = None,
    maximum: float | None = None,
    mean: float | None = None,
    std: float | None = None,
) -> S.NumericProfile:
    """A sketch profile from (level, value) quantile pairs (plus min/max as levels 0 and 1)."""
    points = dict(pairs)
    if minimum is not None:
        points[0.0] = minimum
    if maximum is not None:
        points[1.0] = maximum
    if len(points) < 2:
        raise S.ProfileFormatError(f"feature {name!r}: need at least two quantiles (or min and max)")
    levels = np.asarray(sorted(points), dtype=np.float64)
    values = np.maximum.accumulate(np.asarray([points[lv] for lv in levels], dtype=np.float64))
    grid = np.linspace(levels[0], levels[-1], SKETCH_POINTS)
    sample = np.interp(grid, levels, values).astype(np.float32)
    sample.sort()
    # Bins at the interior quantiles; proportion below an edge = smallest level whose value reaches it.
    interior = [(lv, v) for lv, v in zip(levels, values, strict=True) if 0.0 < lv < 1.0]
    edges: list[float] = []
    below: list[float] = []
    for lv, v in interior:
        v32 = float(np.float32(v))
        if edges and v32 <= edges[-1]:
            continue
        edges.append(v32)
        below.append(float(lv))
    if edges and minimum is not None and edges[0] <= float(np.float32(minimum)):
        edges, below = edges[1:], below[1:]
    cuts = np.asarray([0.0, *below, 1.0])
    counts = np.round(np.diff(cuts) * count).astype(np.int64)
    return S.NumericProfile(
        name=name,
        count=count,
        null_count=null_count,
        sample=sample,
        edges=np.asarray(edges, dtype=np.float32),
        bin_counts=counts,
        mean=mean if mean is not None else float("nan"),
        std=std if std is not None else float("nan"),
        quantiles={S.format_score(lv): float(v) for lv, v in zip(levels, values, strict=True)},
    )


HISTOGRAM_BINS = 10
"""The feature job's numeric histograms have their edges at the deciles (``column_stats``)."""
WRITTEN_DIGITS = 6
"""The feature job writes statistics with 6 significant digits."""


def _rounding_half_unit(value: float) -> float:
    """Half a unit in the last of ``WRITTEN_DIGITS`` significant digits of ``value`` (0 for 0)."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - (WRITTEN_DIGITS - 1))


def histogram_bins(edges: list[float], counts: list[int]) -> tuple[S.F32Array, S.IntArray]:
    """Histogram bins ``[e_i, e_i+1)`` as the feature job wrote them -> (strictly increasing float32
    inner edges, counts per bin), with every value counted on the side the writer counted it.

    ``recops_features.snapshot.column_stats`` puts the edges at the deciles (linear interpolation),
    counts, and only then rounds the edges to 6 significant digits, so a written edge ``r`` stands for
    any edge within half a unit of its last digit, and values sitting on it (counts, rates such as 1/13:
    point masses) may have been counted on either side:

    * usually the decile *is* such a value and the writer counted it above the edge: the edge is read
      as the low end of its rounding interval;
    * a decile at a whole position ``p = i * (n - 1) / 10`` can land a hair above ``p`` in numpy's
      floating point (``0.30000000000000004 * 350 = 105.00000000000001``): the edge is then a hair above
      the value ``v[p]``, every value equal to it was counted *below*, and exactly ``p + 1`` values lie
      below the edge (an edge at or under ``v[p]`` has at most ``p``, a later edge has an empty bin
      below it): such an edge is read as the high end of its interval.

    Bins left without width held values at that edge; their counts move into the next bin. Read as
    written, up to 30 % of a count feature's reference sat in the wrong bin and every fresh window of
    unchanged data "drifted"; read this way, 454 of 460 histograms of 20 synthetic snapshots matched a
    recount of their data exactly and the other 6 (continuous) were off by one value
    (tests/unit/drift/test_profile_formats.py holds the contract).
    """
    n = sum(int(c) for c in counts)
    positions = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1) * (n - 1)  # numpy's own float64 arithmetic
    above_a_value = {
        i * (n - 1) // HISTOGRAM_BINS + 1
        for i in range(1, HISTOGRAM_BINS)
        if i * (n - 1) % HISTOGRAM_BINS == 0 and positions[i] > i * (n - 1) // HISTOGRAM_BINS
    }
    low = np.float32(edges[0])
    inner: list[float] = []
    merged: list[int] = []
    carried = 0
    below = 0
    for j, count in enumerate(counts):
        carried += int(count)
        below += int(count)
        if j == len(counts) - 1:
            merged.append(carried)
            break
        written = float(edges[j + 1])
        half = _rounding_half_unit(written)
        edge = np.float32(written + half if below in above_a_value and count > 0 else written - half)
        if edge > (inner[-1] if inner else low):
            merged.append(carried)
            carried = 0
            inner.append(float(edge))
    return np.asarray(inner, dtype=np.float32), np.asarray(merged, dtype=np.int64)


def numeric_from_histogram(
    name: str,
    edges: list[float],
    counts: list[int],
    *,
    null_count: int = 0,
    mean: float | None = None,
    std: float | None = None,
) -> S.NumericProfile:
    """A sketch profile from a histogram with explicit outer edges (len(edges) == len(counts) + 1)."""
    if len(edges) != len(counts) + 1 or len(counts) < 1:
        raise S.ProfileFormatError(f"feature {name!r}: histogram needs len(edges) == len(counts) + 1")
    total = int(sum(int(c) for c in counts))
    cumulative = np.concatenate(([0.0], np.cumsum(np.asarray(counts, dtype=np.float64)))) / max(total, 1)
    pairs = list(zip(cumulative.tolist(), [float(e) for e in edges], strict=True))
    prof = numeric_from_quantiles(
        name,
        pairs[1:-1] or pairs,
        count=total,
        null_count=null_count,
        minimum=float(edges[0]),
        maximum=float(edges[-1]),
        mean=mean,
        std=std,
    )
    inner, merged = histogram_bins(edges, counts)
    if inner.size:
        prof = S.NumericProfile(
            name=name,
            count=total,
            null_count=null_count,
            sample=prof.sample,
            edges=inner,
            bin_counts=merged,
            mean=prof.mean,
            std=prof.std,
            quantiles=prof.quantiles,
        )
    return prof


def categorical_from_counts(
    name: str, counts: Mapping[str, float], *, total: int | None = None, null_count: int = 0
) -> S.CategoricalProfile:
    """Category counts (or shares with ``total``) -> categorical profile, ``__other__`` = the remainder.

    With ``total``, values summing to at most ``1 + SHARE_ROUNDING`` are shares: the feature job and the
    TrainingRun round each share to 6 digits, so ten categories can sum to 1.000001 and more; read as
    counts, every category would become 0 and the whole reference ``__other__`` (a certain false alarm).
    """
    items = sorted(((str(k), float(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    shares = total is not None and sum(v for _, v in items) <= 1.0 + SHARE_ROUNDING
    values = [round(v * total) if shares and total is not None else round(v) for _, v in items]
    count = int(total) if total is not None else int(sum(values))
    other = max(0, count - int(sum(values)))
    return S.CategoricalProfile(
        name=name,
        count=count,
        null_count=null_count,
        categories=tuple(k for k, _ in items),
        counts=np.asarray([*values, other], dtype=np.int64),
    )


def _column_profile(name: str, col: Mapping[str, Any]) -> S.FeatureProfile | None:
    """One manifest column statistics object -> a profile (None when it carries nothing usable).

    Matches ``recops_features.snapshot.column_stats``: ``kind`` numeric (quantiles ``p1``..``p99``,
    ``histogram`` with outer edges) or categorical (``frequencies`` as fractions, ``otherFraction``);
    ``key`` and ``time`` columns are not monitored.
    """
    if col.get("kind") in ("key", "time") or col.get("type") in ("timestamp", "date"):
        return None
    count = _num(col.get("count", col.get("nonNull", col.get("rows"))))
    nulls = int(_num(col.get("nullCount", col.get("nulls", col.get("null_count", 0)))) or 0)
    top = col.get("topValues", col.get("categories", col.get("frequencies", col.get("valueCounts"))))
    if top:
        if isinstance(top, list):
            top = {
                str(t[0] if not isinstance(t, Mapping) else t.get("value")): (
                    t[1] if not isinstance(t, Mapping) else t.get("count", 0)
                )
                for t in top
            }
        return categorical_from_counts(name, top, total=int(count) if count is not None else None, null_count=nulls)
    hist = col.get("histogram")
    if isinstance(hist, Mapping) and hist.get("edges") and hist.get("counts"):
        return numeric_from_histogram(
            name,
            list(hist["edges"]),
            list(hist["counts"]),
            null_count=nulls,
            mean=_num(col.get("mean")),
            std=_num(col.get("std")),
        )
    pairs = _quantile_pairs(col.get("quantiles", col.get("percentiles", {})))
    minimum, maximum = _num(col.get("min")), _num(col.get("max"))
    if count is None or (len(pairs) + (minimum is not None) + (maximum is not None)) < 2:
        return None
    return numeric_from_quantiles(
        name,
        pairs,
        count=int(count),
        null_count=nulls,
        minimum=minimum,
        maximum=maximum,
        mean=_num(col.get("mean")),
        std=_num(col.get("std")),
    )


def _iter_columns(statistics: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Accepts {table: {column: stats}}, {table: {"columns": {...}|[...]}}, [{"table", "column", ...}]."""
    if isinstance(statistics, list):
        for col in statistics:
            if isinstance(col, Mapping) and col.get("name", col.get("column")):
                table = col.get("table")
                column = str(col.get("name", col.get("column")))
                yield (f"{table}.{column}" if table else column), col
        return
    if not isinstance(statistics, Mapping):
        return
    for table, body in statistics.items():
        if not isinstance(body, Mapping):
            continue
        columns = body.get("columns", body)
        if isinstance(columns, list):
            for col in columns:
                if isinstance(col, Mapping) and col.get("name"):
                    yield f"{table}.{col['name']}", col
        elif isinstance(columns, Mapping):
            for column, col in columns.items():
                if isinstance(col, Mapping):
                    yield f"{table}.{column}", col


def features_from_statistics(statistics: Any) -> dict[str, S.FeatureProfile]:
    out: dict[str, S.FeatureProfile] = {}
    for name, col in _iter_columns(statistics):
        try:
            prof = _column_profile(name, col)
        except S.ProfileFormatError:
            prof = None
        if prof is not None:
            out[name] = prof
    return out


def _manifest_statistics(manifest: Mapping[str, Any]) -> Any:
    if manifest.get("statistics") is not None:
        return manifest["statistics"]
    tables = manifest.get("tables")
    if isinstance(tables, Mapping):
        return {
            t: (b.get("stats") or b.get("statistics") or b.get("columns") or {})
            for t, b in tables.items()
            if isinstance(b, Mapping)
        }
    if isinstance(tables, list):
        return {
            str(t.get("name")): (t.get("stats") or t.get("statistics") or t.get("columns") or {})
            for t in tables
            if isinstance(t, Mapping) and t.get("name")
        }
    return None


def profile_from_manifest(manifest: Mapping[str, Any]) -> S.ReferenceProfile:
    """A feature snapshot manifest -> a sketch profile with ``<table>.<column>`` features."""
    features = features_from_statistics(_manifest_statistics(manifest))
    rows = max((f.count + f.null_count for f in features.values()), default=0)
    version = str(manifest.get("version") or manifest.get("digest") or "") or None
    return S.ReferenceProfile(
        features=features,
        rows=rows,
        model_version=None,
        source={"kind": "FeatureSnapshot", "snapshotVersion": version or ""},
        created_at=manifest.get("createdAt"),
    )


def profile_from_training_document(doc: Mapping[str, Any]) -> S.ReferenceProfile:
    """The TrainingRun's ``RecopsReferenceProfile`` -> profile (snapshot statistics + output features)."""
    embedded = doc.get("driftProfile") or doc.get("profile")
    if isinstance(embedded, Mapping) and embedded.get("format") == S.PROFILE_FORMAT:
        return S.ReferenceProfile.from_json(embedded)
    statistics = doc.get("statistics")
    if statistics is None and doc.get("tables") is not None:
        statistics = _manifest_statistics({"tables": doc["tables"]})
    features = features_from_statistics(statistics)
    predictions = doc.get("predictions") or {}
    k = int(_num(predictions.get("k")) or 10)
    users = int(_num(predictions.get("users")) or 0)
    total = max(users * k, 0)
    share = predictions.get("categoryShare")
    if isinstance(share, Mapping) and share and total:
        features[S.OUTPUT_CATEGORY] = categorical_from_counts(S.OUTPUT_CATEGORY, share, total=total)
    pop = predictions.get("recommendedPopularity")
    if isinstance(pop, Mapping) and total:
        pairs = _quantile_pairs(pop.get("quantiles", {}))
        if len(pairs) + (pop.get("min") is not None) + (pop.get("max") is not None) >= 2:
            features[S.OUTPUT_POPULARITY] = numeric_from_quantiles(
                S.OUTPUT_POPULARITY,
                pairs,
                count=total,
                minimum=_num(pop.get("min")),
                maximum=_num(pop.get("max")),
                mean=_num(pop.get("mean")),
                std=_num(pop.get("std")),
            )
    snapshot = doc.get("snapshot") or {}
    rows = max((f.count + f.null_count for f in features.values()), default=0)
    return S.ReferenceProfile(
        features=features,
        rows=rows,
        model_version=doc.get("modelVersion"),
        source={"kind": "RecopsReferenceProfile", "snapshotVersion": str(snapshot.get("version") or "")},
        created_at=doc.get("createdAt"),
        items=S.ItemLookup.from_json(doc["itemLookup"]) if doc.get("itemLookup") else None,
    )


def load_reference_document(doc: Any) -> S.ReferenceProfile:
    """Any supported reference document -> :class:`ReferenceProfile` (raises ProfileFormatError)."""
    if not isinstance(doc, Mapping):
        raise S.ProfileFormatError("the reference document must be a JSON object")
    if doc.get("format") == S.PROFILE_FORMAT:
        return S.ReferenceProfile.from_json(doc)
    if doc.get("kind") == "RecopsReferenceProfile":
        return profile_from_training_document(doc)
    if "tables" in doc or "statistics" in doc:
        return profile_from_manifest(doc)
    raise S.ProfileFormatError(
        "the reference is neither a recops reference profile (format recops.dev/reference-profile), a "
        "TrainingRun RecopsReferenceProfile nor a feature snapshot manifest (tables/statistics)"
    )


def build_reference_profile(
    frames: Mapping[str, Any],
    *,
    recommended_items: Iterable[str] | None = None,
    item_ids: Iterable[str] | None = None,
    item_popularity: Iterable[float] | None = None,
    item_categories: Iterable[str] | None = None,
    model_version: str | None = None,
    snapshot_version: str | None = None,
    sketch_size: int | None = S.DEFAULT_SKETCH_SIZE,
    bins: int = S.DEFAULT_BINS,
    max_categories: int = S.DEFAULT_MAX_CATEGORIES,
    created_at: str | None = None,
) -> S.ReferenceProfile:
    """Build our profile from pandas frames ``{table: DataFrame}`` (features ``<table>.<column>``) and,
    optionally, the model's recommendations on holdout users plus the item table (-> output features
    and an item lookup, so the check can map served item ids to popularity and category).

    Numeric and boolean columns become numeric features; string/categorical columns categorical ones;
    id-like columns (``*_id``) and timestamps are skipped.
    """
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for table, frame in frames.items():
        for column in frame.columns:
            if str(column).endswith("_id") or str(column) in ("id",):
                continue
            series = frame[column]
            kind = getattr(series.dtype, "kind", "O")
            name = f"{table}.{column}"
            if kind in "biuf":
                numeric[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            elif kind in "OSU" or str(series.dtype) in ("category", "string", "str"):
                categorical[name] = series.astype(object).where(series.notna(), None).tolist()
    items: S.ItemLookup | None = None
    if item_ids is not None and item_popularity is not None:
        ids = tuple(str(i) for i in item_ids)
        cats = tuple(str(c) for c in item_categories) if item_categories is not None else None
        items = S.ItemLookup(ids, np.asarray(list(item_popularity), dtype=np.float32), cats)
        if recommended_items is not None:
            out = S.output_features([str(i) for i in recommended_items], items)
            numeric[S.OUTPUT_POPULARITY] = out[S.OUTPUT_POPULARITY]
            if S.OUTPUT_CATEGORY in out:
                categorical[S.OUTPUT_CATEGORY] = out[S.OUTPUT_CATEGORY]
    return S.prepare_profile(
        numeric,
        categorical,
        bins=bins,
        sketch_size=sketch_size,
        max_categories=max_categories,
        model_version=model_version,
        created_at=created_at,
        items=items,
        source={"kind": "TrainingRun", "snapshotVersion": snapshot_version or ""},
    )

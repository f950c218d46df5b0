"""Drift statistics: pure, fast, typed.

Everything here is a pure function of arrays (no I/O, no clock). The reference side is prepared once
per model version into a :class:`ReferenceProfile` (sorted float32 sample or an evenly spaced
order-statistics sketch, quantile bins with their counts, category frequencies); a check then only
sorts each current column once and answers every statistic from that sort with binary searches on
the presorted reference:

* ``psi`` and ``jensenshannon`` on numeric features: bins are the reference quantiles;
* ``ks``: the two-sample Kolmogorov-Smirnov statistic D and its p-value (same definition as
  :func:`scipy.stats.ks_2samp`), in O(m log m) for the sort plus O((m / stride) log n) searches;
* ``psi``, ``jensenshannon`` and ``chi2`` on categorical features, with an explicit ``__other__``
  bucket for categories the reference never saw (or kept out of its top-K) and epsilon smoothing;
* output drift: the popularity and categories of the recommended items are just one numeric and one
  categorical feature (``output.popularity`` and ``output.category``), see :func:`output_features`.

:func:`compare` applies a :class:`DriftSpec` (per-feature method and threshold given as decimal
strings, minimum sample sizes, the drifted share that makes the whole window drifted) and returns a
:class:`DriftResult`.

Scores and thresholds (drift when ``score > threshold`` and the p-value < ``significance``):

=================  ======================================================  =================
method             score (p-value)                                         usual threshold
=================  ======================================================  =================
``psi``            population stability index (eps-smoothed proportions)   0.1 - 0.25
                   (chi-squared two-sample test on the same buckets)
``jensenshannon``  Jensen-Shannon distance, base 2, in [0, 1] (as psi)      0.1
``ks``             KS statistic D in [0, 1] (KS test)                      0.1
``chi2``           Cohen's w = sqrt(chi2_gof / n_current) (chi-squared      0.1 - 0.3
                   two-sample test)
=================  ======================================================  =================

The p-value guard keeps sampling noise from alarming on small windows: with 200 values per side a
PSI above 0.2 on 16 categories happens in a quarter of the windows of unchanged data; on large
windows any score above a usual threshold has a p-value far below 0.05, so the guard costs no power.
:func:`compare` tests each of the k checked features at ``significance / k`` (Bonferroni), so the
chance that unchanged data alarms any feature of a window stays below ``significance``.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

FloatArray = npt.NDArray[np.floating[Any]]
F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

PROFILE_FORMAT: Final = "recops.dev/reference-profile"
PROFILE_VERSION: Final = 1
EPSILON: Final = 1e-4
"""Smallest proportion used by PSI and Cohen's w (a bucket seen on one side only is not infinite)."""
OTHER: Final = "__other__"
"""The categorical bucket for categories outside the reference's kept categories (unseen ones)."""
DEFAULT_BINS: Final = 10
DEFAULT_SKETCH_SIZE: Final = 20_000
DEFAULT_MAX_CATEGORIES: Final = 200
KS_EXACT_KSTWO_MAX_N: Final = 10_000
"""Up to this effective size the KS p-value uses scipy's ``kstwo.sf`` (what ``ks_2samp`` does in its
asymptotic mode, at most ~10 ms); above it the limiting Kolmogorov distribution, within 2 % relative
for p > 1e-10 and O(1) instead of up to a second per call."""

Kind = Literal["numeric", "categorical"]
Method = Literal["psi", "jensenshannon", "ks", "chi2"]
METHODS: Final[tuple[str, ...]] = ("psi", "jensenshannon", "ks", "chi2")
METHOD_ALIASES: Final[Mapping[str, str]] = {
    "js": "jensenshannon",
    "jsd": "jensenshannon",
    "chisquare": "chi2",
}
METHOD_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "psi": frozenset({"numeric", "categorical"}),
    "jensenshannon": frozenset({"numeric", "categorical"}),
    "ks": frozenset({"numeric"}),
    "chi2": frozenset({"categorical"}),
}
DEFAULT_THRESHOLDS: Final[Mapping[str, str]] = {
    "psi": "0.2",
    "jensenshannon": "0.1",
    "ks": "0.1",
    "chi2": "0.2",
}

# Feature statuses.
NO_DRIFT: Final = "NoDrift"
DRIFTED: Final = "Drifted"
INSUFFICIENT_DATA: Final = "InsufficientData"
MISSING: Final = "Missing"


class DriftSpecError(ValueError):
    """The spec is invalid (unknown method, bad threshold, method not applicable to a feature)."""


class ProfileFormatError(ValueError):
    """A serialised reference profile is malformed or of an unknown version."""


# --------------------------------------------------------------------------------------------------
# Numbers given as strings
# --------------------------------------------------------------------------------------------------


def parse_decimal(text: str | int, *, what: str, low: float | None = 0.0, high: float | None = None) -> float:
    """Parse a decimal string such as ``"0.2"`` (never a float in a spec) into a float, range-checked."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise DriftSpecError(f'{what} must be a decimal string such as "0.2", got {text!r}')
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise DriftSpecError(f'{what} must be a decimal string such as "0.2", got {text!r}') from exc
    if not value.is_finite():
        raise DriftSpecError(f"{what} must be finite, got {text!r}")
    number = float(value)
    if low is not None and number < low:
        raise DriftSpecError(f"{what} must be >= {low:g}, got {text!r}")
    if high is not None and number > high:
        raise DriftSpecError(f"{what} must be <= {high:g}, got {text!r}")
    return number


def format_score(value: float) -> str:
    """A compact decimal string for a score (4 significant digits, no exponent for usual values)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    text = f"{value:.4g}"
    if "e" in text and 1e-6 <= abs(value) < 1e15:
        text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text


# --------------------------------------------------------------------------------------------------
# Binned divergences
# --------------------------------------------------------------------------------------------------


def proportions(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Counts -> proportions (all zeros stay zeros)."""
    array = np.asarray(counts, dtype=np.float64)
    total = float(array.sum())
    if total <= 0:
        return np.zeros_like(array)
    result: npt.NDArray[np.float64] = array / total
    return result


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, *, epsilon: float = EPSILON) -> float:
    """Population stability index sum((c - r) * ln(c / r)) over buckets.

    Proportions below ``epsilon`` (a bucket empty on one side, e.g. an unseen category) are raised to
    ``epsilon`` so the index stays finite.
    """
    ref = np.maximum(proportions(reference_counts), epsilon)
    cur = np.maximum(proportions(current_counts), epsilon)
    if ref.shape != cur.shape:
        raise ValueError(f"bucket counts differ: reference {ref.shape}, current {cur.shape}")
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensenshannon(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1].

    Equal to ``scipy.spatial.distance.jensenshannon(r, c, base=2)``; needs no smoothing.
    """
    ref = proportions(reference_counts)
    cur = proportions(current_counts)
    if ref.shape != cur.shape:
        raise ValueError(f"bucket counts differ: reference {ref.shape}, current {cur.shape}")
    mid = (ref + cur) / 2.0
    divergence = float(np.sum(special.rel_entr(ref, mid)) + np.sum(special.rel_entr(cur, mid))) / 2.0
    divergence /= math.log(2.0)
    return math.sqrt(max(divergence, 0.0))


def bin_counts_sorted(sorted_values: FloatArray, inner_edges: FloatArray) -> IntArray:
    """Counts of a sorted sample in bins ``(-inf, e0), [e0, e1), ..., [e_last, +inf)``: O(B log m)."""
    positions = np.searchsorted(sorted_values, inner_edges, side="left").astype(np.int64)
    bounds = np.concatenate(([0], positions, [sorted_values.size])).astype(np.int64)
    counts: IntArray = np.diff(bounds)
    return counts


def quantile_edges(sorted_values: F32Array, bins: int) -> F32Array:
    """Inner bin edges at the reference quantiles i/bins (actual sample values, deduplicated)."""
    n = sorted_values.size
    if n == 0 or bins < 2:
        return np.empty(0, dtype=np.float32)
    positions = (np.arange(1, bins, dtype=np.int64) * n) // bins
    edges: F32Array = np.unique(sorted_values[positions])
    # A first edge equal to the minimum would make an always-empty first bin.
    if edges.size and edges[0] <= sorted_values[0]:
        edges = edges[1:]
    return edges


# --------------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov on a presorted reference
# --------------------------------------------------------------------------------------------------


def _ks_at(
    reference: FloatArray, current: FloatArray, positions: IntArray, current_ties: bool
) -> tuple[npt.NDArray[np.float64], IntArray, IntArray, IntArray, IntArray]:
    """|F_r - F_c| candidates at sorted-current positions, plus the rank bounds used for pruning."""
    n = reference.size
    m = current.size
    values = current[positions]
    below_r = np.searchsorted(reference, values, side="left").astype(np.int64)  # #ref < v
    upto_r = np.searchsorted(reference, values, side="right").astype(np.int64)  # #ref <= v
    if current_ties:
        below_c = np.searchsorted(current, values, side="left").astype(np.int64)
        upto_c = np.searchsorted(current, values, side="right").astype(np.int64)
    else:
        below_c = positions.astype(np.int64)
        upto_c = below_c + 1
    at = np.abs(upto_r / n - upto_c / m)  # at v (right-continuous CDFs)
    before = np.abs(below_r / n - below_c / m)  # on [previous current value, v)
    return np.maximum(at, before), below_r, upto_r, below_c, upto_c


def ks_statistic_presorted(reference: FloatArray, current: FloatArray, *, stride: int = 64) -> float:
    """Two-sample KS statistic D = sup |F_r - F_c| for two *sorted* samples without NaN.

    Exact (the same value as ``scipy.stats.ks_2samp``). The supremum is reached at a current value
    or just before one, so only ranks of current values in the reference are needed. They are
    searched at every ``stride``-th current value first; between two such probes both CDFs are
    monotone, which bounds |F_r - F_c| there, and only the stretches whose bound beats the best value
    so far are searched in full (a few percent of them in practice; with ties only the first value
    of each run of equal values). Never O(n * m).
    """
    n = int(reference.size)
    m = int(current.size)
    if n == 0 or m == 0:
        raise ValueError("KS needs non-empty samples")
    ties = bool(m > 1 and np.any(current[1:] == current[:-1]))
    if m <= 4 * stride:
        return float(_ks_at(reference, current, np.arange(m, dtype=np.int64), ties)[0].max())
    probes = np.arange(0, m, stride, dtype=np.int64)
    if probes[-1] != m - 1:
        probes = np.append(probes, np.int64(m - 1))
    found, below_r, upto_r, below_c, upto_c = _ks_at(reference, current, probes, ties)
    best = float(found.max())
    # Between probes a < b every |F_r - F_c| is at most
    # max(upto_r[b]/n - below_c[a]/m, upto_c[b]/m - below_r[a]/n).
    bound = np.maximum(upto_r[1:] / n - below_c[:-1] / m, upto_c[1:] / m - below_r[:-1] / n)
    gaps = probes[1:] - probes[:-1] - 1
    wanted = bound > best
    wanted &= gaps > 0
    if ties:  # probes inside one run of equal values: nothing new between them
        wanted &= current[probes[1:]] != current[probes[:-1]]
    open_ = np.flatnonzero(wanted)
    if open_.size:
        starts = probes[open_] + 1
        lengths = gaps[open_]
        offsets = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(offsets - starts, lengths)
        if ties:  # one evaluation per distinct value: at the first of its run
            positions = positions[current[positions] != current[positions - 1]]
        if positions.size:
            best = max(best, float(_ks_at(reference, current, positions, ties)[0].max()))
    return best


GRID_CELLS: Final = 1 << 16
"""Cells of the value grid a reference prepares for sort-free checks (see :class:`CellGrid`)."""
GRID_MIN_CURRENT: Final = 20_000
"""Below this many current values the plain sort path is as fast; above it the grid path is used."""


@dataclass(frozen=True, slots=True, eq=False)
class CellGrid:
    """A monotone map value -> cell over the reference's central range, prepared once.

    ``cell(x) = clip(trunc(x * scale - offset), -1, cells) + 1`` in float32 arithmetic: every step is
    monotone non-decreasing, so "cell <= g" is the same down-set of values for the reference and the
    current sample, and cumulative cell counts are exact values of both empirical CDFs at common
    points. That gives exact KS bounds from one linear pass (``bincount``) instead of a sort; only
    the few cells that could hold the supremum are looked into (see :func:`ks_and_bins_unsorted`).
    """

    scale: np.float32
    offset: np.float32
    cells: int
    cumulative: IntArray
    """Reference values in cells < g, for g = 0 .. cells + 2 (len cells + 3)."""
    single: npt.NDArray[np.bool_]
    """Cells whose reference values are all equal (discrete data): ``value`` holds it."""
    value: F32Array

    def cell(self, values: F32Array) -> npt.NDArray[np.intp]:
        t = np.multiply(values, self.scale, dtype=np.float32)
        np.subtract(t, self.offset, out=t)
        np.clip(t, np.float32(-1.0), np.float32(self.cells), out=t)
        index = t.astype(np.intp)
        index += 1
        return index


def build_grid(sample: F32Array, count: int, cells: int = GRID_CELLS) -> CellGrid | None:
    """The grid of a sorted reference sample (None when the sample is degenerate or tiny)."""
    k = int(sample.size)
    if k < 2:
        return None
    lo, hi = float(sample[int(0.001 * (k - 1))]), float(sample[int(np.ceil(0.999 * (k - 1)))])
    if not hi > lo:
        lo, hi = float(sample[0]), float(sample[-1])
    if not (hi > lo and math.isfinite(lo) and math.isfinite(hi)):
        return None
    scale = np.float32(cells / (hi - lo))
    if not math.isfinite(float(scale)) or float(scale) <= 0:
        return None
    empty_b = np.zeros(cells + 2, dtype=np.bool_)
    empty_v = np.zeros(cells + 2, dtype=np.float32)
    probe = CellGrid(scale, np.float32(float(scale) * lo), cells, np.zeros(cells + 3, dtype=np.int64), empty_b, empty_v)
    counts = np.bincount(probe.cell(sample), minlength=cells + 2).astype(np.int64)
    cumulative = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    nonempty = counts > 0
    first = sample[np.minimum(cumulative[:-1], k - 1)]
    last = sample[np.maximum(cumulative[1:] - 1, 0)]
    single = nonempty & (first == last)
    if k != count:  # a sketch: scale its counts to the reference size (KS is approximate anyway)
        cumulative = np.round(cumulative * (count / k)).astype(np.int64)
    return CellGrid(probe.scale, probe.offset, cells, cumulative, single, np.where(single, first, 0).astype(np.float32))


def ks_and_bins_unsorted(
    reference: F32Array, n: int, grid: CellGrid, current: F32Array, edges: F32Array
) -> tuple[float, IntArray]:
    """KS statistic and counts in the reference bins for an *unsorted* current sample without NaN.

    Exact, without sorting ``current``: one pass maps values to cells and counts them; cumulative
    counts give |F_r - F_c| exactly at every cell boundary (a lower bound of D) and bound it inside
    each cell. Only the current values in cells whose bound beats the lower bound (and in the cells
    holding a bin edge) are looked into: counted against the reference value where the reference has
    one value in the cell (discrete data), sorted and ranked in the presorted reference otherwise.
    A bin edge in a one-value cell is counted in the same pass against the edge itself, which need not
    be the reference's value there (a sketch profile's edges come from a histogram); a cell holding two
    edges is sorted.
    """
    m = int(current.size)
    cells = grid.cell(current)
    counts = np.bincount(cells, minlength=grid.cells + 2).astype(np.int64)
    cum_c = np.concatenate(([0], np.cumsum(counts)))  # current values in cells < g
    cum_r = grid.cumulative
    nn = float(n)
    best = float(np.abs(cum_r / nn - cum_c / m).max())
    # Inside cell g both CDFs lie between their values at the cell's two boundaries.
    bound = np.maximum(cum_r[1:] / nn - cum_c[:-1] / m, cum_c[1:] / m - cum_r[:-1] / nn)
    wanted = (bound > best) & (counts > 0)
    edge_cells = grid.cell(edges) if edges.size else np.empty(0, dtype=np.intp)
    wanted[edge_cells] = True
    sorted_cells = ~grid.single
    edge_cell_ids, edges_per_cell = np.unique(edge_cells, return_counts=True)
    sorted_cells[edge_cell_ids[edges_per_cell > 1]] = True
    lone = ~sorted_cells[edge_cells]  # edges counted in the one-value cells' pass
    below_edges = cum_c[edge_cells].astype(np.int64)
    if not wanted.any():
        return best, np.diff(np.concatenate(([0], below_edges, [m]))).astype(np.int64)
    size = grid.cells + 2

    # Cells where the reference holds one value v: F_r steps once, at v. Count current values < v and
    # <= v there; the candidates are |F_r before v - F_c before v| and |F_r at v - F_c at v|.
    single_wanted = wanted & ~sorted_cells
    single_cells = np.flatnonzero(single_wanted)
    if single_cells.size:
        if int(counts[single_cells].sum()) * 4 > m:  # discrete data: one pass, no copy of the bulk
            values, where = current, cells
        else:
            chosen = single_wanted[cells]
            values, where = current[chosen], cells[chosen]
        at = grid.value[where]
        less = np.bincount(where[values < at], minlength=size).astype(np.int64)
        more = np.bincount(where[values > at], minlength=size).astype(np.int64)
        g = single_cells
        c_lt, c_le = cum_c[g] + less[g], cum_c[g + 1] - more[g]
        cand = np.maximum(np.abs(cum_r[g] / nn - c_lt / m), np.abs(cum_r[g + 1] / nn - c_le / m))
        best = max(best, float(cand.max()))
        lone_cells = edge_cells[lone]
        if np.array_equal(edges[lone], grid.value[lone_cells]):
            below_edges[lone] = cum_c[lone_cells] + less[lone_cells]
        else:  # an edge beside the reference's value: compare with the edge itself
            edge_at = np.full(size, -np.inf, dtype=np.float32)
            edge_at[lone_cells] = edges[lone]
            below_edge = np.bincount(where[values < edge_at[where]], minlength=size)
            below_edges[lone] = cum_c[lone_cells] + below_edge[lone_cells]

    multi = wanted & sorted_cells
    rest = np.sort(current[multi[cells]]) if multi.any() else current[:0]
    rest_counts = np.where(multi, counts, 0)
    # Global rank of a sorted value = rank among ``rest`` + current values in cells before its cell that
    # are not in ``rest``: offset[g] = cum_c[g] - values of ``rest`` in cells < g.
    offset = cum_c[:-1] - (np.cumsum(rest_counts) - rest_counts)
    if rest.size:
        rcells = grid.cell(rest)
        if rest.size > 1 and bool(np.any(rest[1:] == rest[:-1])):
            below_c = np.searchsorted(rest, rest, side="left").astype(np.int64)
            upto_c = np.searchsorted(rest, rest, side="right").astype(np.int64)
        else:
            below_c = np.arange(rest.size, dtype=np.int64)
            upto_c = below_c + 1
        below_c += offset[rcells]
        upto_c += offset[rcells]
        # F_r as a fraction (a sketch's ranks are fractions of its own size).
        below_f = np.searchsorted(reference, rest, side="left") / float(reference.size)
        upto_f = np.searchsorted(reference, rest, side="right") / float(reference.size)
        inner = np.maximum(np.abs(upto_f - upto_c / m), np.abs(below_f - below_c / m))
        best = max(best, float(inner.max()))
    if edges.size:
        in_sorted = ~lone
        below_edges[in_sorted] = np.searchsorted(rest, edges[in_sorted], side="left") + offset[edge_cells[in_sorted]]
    bins = np.diff(np.concatenate(([0], below_edges, [m]))).astype(np.int64)
    return best, bins


def ks_statistic_sketch(sketch: FloatArray, current: FloatArray) -> float:
    """KS statistic against an evenly spaced order-statistics sketch of the reference (error <= 1/len)."""
    return ks_statistic_presorted(sketch, current)


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided p-value of the two-sample KS statistic (scipy's asymptotic mode).

    ``kstwo.sf(D, round(en))`` with ``en = n*m/(n+m)`` as :func:`scipy.stats.ks_2samp` uses for large
    samples; for ``en`` above 10 000 the limiting Kolmogorov distribution ``kolmogorov(sqrt(en) * D)``,
    which agrees to 2 % relative (p > 1e-10) and does not take up to a second as ``kstwo.sf`` can.
    """
    if n_reference <= 0 or n_current <= 0:
        raise ValueError("KS needs non-empty samples")
    big, small = sorted((float(n_reference), float(n_current)), reverse=True)
    en = big * small / (big + small)
    if round(en) <= KS_EXACT_KSTWO_MAX_N:
        p = float(stats.kstwo.sf(statistic, round(en)))
    else:
        p = float(special.kolmogorov(math.sqrt(en) * statistic))
    return min(max(p, 0.0), 1.0)


def ks_2samp(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """Convenience: sort both samples (NaN dropped), return (D, p-value)."""
    ref = np.sort(np.asarray(reference)[~np.isnan(reference)])
    cur = np.sort(np.asarray(current)[~np.isnan(current)])
    d = ks_statistic_presorted(ref, cur)
    return d, ks_pvalue(d, ref.size, cur.size)


# --------------------------------------------------------------------------------------------------
# Chi-squared on categorical counts
# --------------------------------------------------------------------------------------------------


def chi2_two_sample(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, float, int]:
    """Chi-squared test of homogeneity on the 2 x K table [reference; current].

    Returns (statistic, p-value, dof) like ``scipy.stats.chi2_contingency`` (Yates' correction when
    dof == 1, as scipy does by default). Categories empty on both sides are dropped.
    """
    table = np.vstack([np.asarray(reference_counts, dtype=np.float64), np.asarray(current_counts, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows <= 0):
        return 0.0, 1.0, 0
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    dof = table.shape[1] - 1
    diff = table - expected
    if dof == 1:
        correction = np.minimum(0.5, np.abs(diff))
        diff = np.sign(diff) * (np.abs(diff) - correction)
    statistic = float(np.sum(diff * diff / expected))
    return statistic, float(special.chdtrc(dof, statistic)), dof


def chi2_goodness_of_fit(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, float]:
    """Pearson's goodness-of-fit of the current counts to the reference proportions.

    Equal to ``scipy.stats.chisquare(current, f_exp=ref_props * n_current)`` when every reference
    proportion is positive; proportions below ``EPSILON`` are raised to it (and renormalised).
    """
    ref = np.maximum(proportions(reference_counts), EPSILON)
    ref = ref / ref.sum()
    cur = np.asarray(current_counts, dtype=np.float64)
    total = float(cur.sum())
    if total <= 0 or cur.size < 2:
        return 0.0, 1.0
    expected = ref * total
    statistic = float(np.sum((cur - expected) ** 2 / expected))
    return statistic, float(special.chdtrc(cur.size - 1, statistic))


def cohens_w(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Effect size sqrt(chi2_gof / n_current) = sqrt(sum((c - r)^2 / r)): independent of sample sizes."""
    cur = np.asarray(current_counts, dtype=np.float64)
    total = float(cur.sum())
    if total <= 0:
        return 0.0
    statistic, _ = chi2_goodness_of_fit(reference_counts, cur)
    return math.sqrt(statistic / total)


# --------------------------------------------------------------------------------------------------
# Reference profile
# --------------------------------------------------------------------------------------------------


def _encode_f32(values: F32Array) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def _decode_f32(text: str, size: int) -> F32Array:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 4 * size:
        raise ProfileFormatError(f"sample has {len(raw) // 4} values, header says {size}")
    array: F32Array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return array


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True, eq=False)
class NumericProfile:
    """The reference side of one numeric feature, prepared once."""

    name: str
    count: int
    """Non-null reference values."""
    null_count: int
    sample: F32Array
    """Sorted float32 values: all of them, or ``sketch_size`` evenly spaced order statistics."""
    edges: F32Array
    """Inner bin edges at reference quantiles."""
    bin_counts: IntArray
    """Reference counts per bin (len(edges) + 1)."""
    mean: float
    std: float
    quantiles: Mapping[str, float] = field(default_factory=dict)
    kind: Kind = "numeric"
    grid: CellGrid | None = field(default=None, repr=False)
    """Prepared on construction from ``sample`` (not serialised)."""

    def __post_init__(self) -> None:
        if self.grid is None:
            object.__setattr__(self, "grid", build_grid(self.sample, self.count))

    @property
    def exact(self) -> bool:
        """Whether ``sample`` holds every reference value (KS then is exact)."""
        return int(self.sample.size) == self.count

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "numeric",
            "count": self.count,
            "nullCount": self.null_count,
            "mean": _finite(self.mean),
            "std": _finite(self.std),
            "min": float(self.sample[0]) if self.sample.size else None,
            "max": float(self.sample[-1]) if self.sample.size else None,
            "quantiles": dict(self.quantiles),
            "bins": {"edges": [float(e) for e in self.edges], "counts": [int(c) for c in self.bin_counts]},
            "sample": {
                "dtype": "float32",
                "encoding": "base64-le",
                "size": int(self.sample.size),
                "exact": self.exact,
                "data": _encode_f32(self.sample),
            },
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> NumericProfile:
        sample_doc = doc["sample"]
        sample = _decode_f32(str(sample_doc["data"]), int(sample_doc["size"]))
        if sample.size > 1 and bool(np.any(sample[1:] < sample[:-1])):
            raise ProfileFormatError(f"feature {doc['name']!r}: sample is not sorted")
        edges = np.asarray(doc["bins"]["edges"], dtype=np.float32)
        counts = np.asarray(doc["bins"]["counts"], dtype=np.int64)
        if counts.size != edges.size + 1:
            raise ProfileFormatError(f"feature {doc['name']!r}: {counts.size} bin counts for {edges.size} edges")
        return NumericProfile(
            name=str(doc["name"]),
            count=int(doc["count"]),
            null_count=int(doc.get("nullCount", 0)),
            sample=sample,
            edges=edges,
            bin_counts=counts,
            mean=float(doc["mean"]) if doc.get("mean") is not None else float("nan"),
            std=float(doc["std"]) if doc.get("std") is not None else float("nan"),
            quantiles={str(k): float(v) for k, v in dict(doc.get("quantiles", {})).items()},
        )


@dataclass(frozen=True, slots=True, eq=False)
class CategoricalProfile:
    """The reference side of one categorical feature: kept categories and an ``__other__`` bucket."""

    name: str
    count: int
    null_count: int
    categories: tuple[str, ...]
    counts: IntArray
    """Counts of ``categories`` followed by the ``__other__`` count (len(categories) + 1)."""
    kind: Kind = "categorical"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "categorical",
            "count": self.count,
            "nullCount": self.null_count,
            "categories": [[c, int(n)] for c, n in zip(self.categories, self.counts[:-1], strict=True)],
            "otherCount": int(self.counts[-1]),
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> CategoricalProfile:
        pairs = [(str(c), int(n)) for c, n in doc["categories"]]
        counts = np.asarray([n for _, n in pairs] + [int(doc.get("otherCount", 0))], dtype=np.int64)
        return CategoricalProfile(
            name=str(doc["name"]),
            count=int(doc["count"]),
            null_count=int(doc.get("nullCount", 0)),
            categories=tuple(c for c, _ in pairs),
            counts=counts,
        )

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, slots=True, eq=False)
class ItemLookup:
    """Popularity and category of catalogue items, to turn recommended item ids into output features."""

    item_ids: tuple[str, ...]
    popularity: F32Array
    categories: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "itemIds": list(self.item_ids),
            "popularity": [float(p) for p in self.popularity],
        }
        if self.categories is not None:
            doc["categories"] = list(self.categories)
        return doc

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> ItemLookup:
        ids = tuple(str(i) for i in doc["itemIds"])
        pop = np.asarray(doc["popularity"], dtype=np.float32)
        cats = tuple(str(c) for c in doc["categories"]) if doc.get("categories") is not None else None
        if pop.size != len(ids) or (cats is not None and len(cats) != len(ids)):
            raise ProfileFormatError("itemLookup arrays differ in length")
        return ItemLookup(item_ids=ids, popularity=pop, categories=cats)


@dataclass(frozen=True, slots=True, eq=False)
class ReferenceProfile:
    """The reference distribution of every monitored feature, prepared once per model version."""

    features: Mapping[str, FeatureProfile]
    rows: int
    model_version: str | None = None
    source: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None
    items: ItemLookup | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "formatVersion": PROFILE_VERSION,
            "modelVersion": self.model_version,
            "createdAt": self.created_at,
            "source": dict(self.source),
            "rows": self.rows,
            "features": [f.to_json() for f in self.features.values()],
        }
        if self.items is not None:
            doc["itemLookup"] = self.items.to_json()
        return doc

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False)

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> ReferenceProfile:
        if doc.get("format") != PROFILE_FORMAT:
            raise ProfileFormatError(
                f"not a reference profile: format is {doc.get('format')!r}, expected {PROFILE_FORMAT!r}"
            )
        if int(doc.get("formatVersion", 0)) != PROFILE_VERSION:
            raise ProfileFormatError(
                f"reference profile formatVersion {doc.get('formatVersion')!r} is not "
                f"supported (expected {PROFILE_VERSION})"
            )
        features: dict[str, FeatureProfile] = {}
        try:
            for item in doc["features"]:
                kind = item.get("kind")
                if kind == "numeric":
                    features[str(item["name"])] = NumericProfile.from_json(item)
                elif kind == "categorical":
                    features[str(item["name"])] = CategoricalProfile.from_json(item)
                else:
                    raise ProfileFormatError(f"feature {item.get('name')!r} has unknown kind {kind!r}")
            items = ItemLookup.from_json(doc["itemLookup"]) if doc.get("itemLookup") else None
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileFormatError):
                raise
            raise ProfileFormatError(f"malformed reference profile: {exc!r}") from exc
        return ReferenceProfile(
            features=features,
            rows=int(doc.get("rows", 0)),
            model_version=doc.get("modelVersion"),
            source={str(k): str(v) for k, v in dict(doc.get("source") or {}).items()},
            created_at=doc.get("createdAt"),
            items=items,
        )

    @staticmethod
    def loads(text: str | bytes) -> ReferenceProfile:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileFormatError(f"reference profile is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ProfileFormatError("reference profile must be a JSON object")
        return ReferenceProfile.from_json(doc)


_QUANTILES: Final = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def prepare_numeric(
    name: str,
    values: npt.ArrayLike,
    *,
    bins: int = DEFAULT_BINS,
    sketch_size: int | None = DEFAULT_SKETCH_SIZE,
) -> NumericProfile:
    """Prepare one numeric reference feature: sort once (float32), quantile bins, optional sketch."""
    raw = np.asarray(values, dtype=np.float32).ravel()
    nulls = np.isnan(raw)
    null_count = int(nulls.sum())
    finite = raw[~nulls] if null_count else raw
    ordered = np.sort(finite)
    edges = quantile_edges(ordered, bins)
    counts = bin_counts_sorted(ordered, edges)
    n = int(ordered.size)
    if sketch_size is not None and n > sketch_size:
        positions = np.round(np.linspace(0, n - 1, sketch_size)).astype(np.int64)
        sample = ordered[positions]
    else:
        sample = ordered
    as64 = ordered.astype(np.float64)
    quantiles = {format_score(q): float(ordered[min(n - 1, int(q * n))]) for q in _QUANTILES} if n else {}
    return NumericProfile(
        name=name,
        count=n,
        null_count=null_count,
        sample=sample,
        edges=edges,
        bin_counts=counts,
        mean=float(as64.mean()) if n else float("nan"),
        std=float(as64.std()) if n else float("nan"),
        quantiles=quantiles,
    )


def _categorical_values(values: Iterable[Any] | npt.ArrayLike) -> tuple[npt.NDArray[np.str_], int]:
    items: list[Any]
    if isinstance(values, np.ndarray):
        items = values.tolist()
    elif isinstance(values, Iterable) and not isinstance(values, str | bytes):
        items = list(values)
    else:
        raise TypeError("categorical values must be a sequence or an array")
    kept = [str(v) for v in items if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return np.asarray(kept, dtype=np.str_), len(items) - len(kept)


def prepare_categorical(
    name: str, values: Iterable[Any] | npt.ArrayLike, *, max_categories: int = DEFAULT_MAX_CATEGORIES
) -> CategoricalProfile:
    """Prepare one categorical reference feature: the top ``max_categories`` and an ``__other__`` bucket."""
    kept, null_count = _categorical_values(values)
    if kept.size:
        uniques, counts = np.unique(kept, return_counts=True)
        order = np.lexsort((uniques, -counts))  # by count desc, then name: deterministic
        uniques, counts = uniques[order], counts[order]
    else:
        uniques, counts = np.empty(0, dtype=np.str_), np.empty(0, dtype=np.int64)
    top = min(max_categories, int(uniques.size))
    other = int(counts[top:].sum())
    return CategoricalProfile(
        name=name,
        count=int(kept.size),
        null_count=null_count,
        categories=tuple(str(u) for u in uniques[:top]),
        counts=np.append(counts[:top].astype(np.int64), np.int64(other)),
    )


def prepare_profile(
    numeric: Mapping[str, npt.ArrayLike],
    categorical: Mapping[str, Iterable[Any] | npt.ArrayLike] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    sketch_size: int | None = DEFAULT_SKETCH_SIZE,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    model_version: str | None = None,
    source: Mapping[str, str] | None = None,
    created_at: str | None = None,
    items: ItemLookup | None = None,
) -> ReferenceProfile:
    """Prepare a :class:`ReferenceProfile` from reference columns (``sketch_size=None`` keeps every value)."""
    features: dict[str, FeatureProfile] = {}
    rows = 0
    for name, values in numeric.items():
        prof = prepare_numeric(name, values, bins=bins, sketch_size=sketch_size)
        features[name] = prof
        rows = max(rows, prof.count + prof.null_count)
    for name, cat_values in (categorical or {}).items():
        cprof = prepare_categorical(name, cat_values, max_categories=max_categories)
        features[name] = cprof
        rows = max(rows, cprof.count + cprof.null_count)
    return ReferenceProfile(
        features=features,
        rows=rows,
        model_version=model_version,
        source=dict(source or {}),
        created_at=created_at,
        items=items,
    )


# --------------------------------------------------------------------------------------------------
# Output drift
# --------------------------------------------------------------------------------------------------

OUTPUT_POPULARITY: Final = "output.popularity"
OUTPUT_CATEGORY: Final = "output.category"
UNSEEN_ITEM_CATEGORY: Final = "__unseen__"


def output_features(recommended: Sequence[str], lookup: ItemLookup) -> dict[str, npt.NDArray[Any]]:
    """Recommended item ids (flattened over requests) -> ``output.popularity`` and ``output.category``.

    Items the lookup does not know get popularity 0 and category ``__unseen__``.
    """
    index = {item: i for i, item in enumerate(lookup.item_ids)}
    positions = np.fromiter((index.get(str(item), -1) for item in recommended), dtype=np.int64, count=len(recommended))
    known = positions >= 0
    popularity = np.zeros(positions.size, dtype=np.float32)
    popularity[known] = lookup.popularity[positions[known]]
    result: dict[str, npt.NDArray[Any]] = {OUTPUT_POPULARITY: popularity}
    if lookup.categories is not None:
        cats = np.asarray([*lookup.categories, UNSEEN_ITEM_CATEGORY], dtype=np.str_)
        result[OUTPUT_CATEGORY] = cats[np.where(known, positions, len(lookup.categories))]
    return result


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureRule:
    """How one feature is compared: method and threshold (decimal string)."""

    name: str
    method: str = "psi"
    threshold: str = "0.2"


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """Per-feature rules, defaults, sample minimums and the overall decision."""

    rules: Sequence[FeatureRule] = ()
    default_rule: FeatureRule = FeatureRule(name="*")
    drift_share: str = "0.3"
    """The window drifted when at least this share of the checked features drifted (and one did)."""
    min_samples: int = 500
    """Current non-null values a feature needs; fewer -> ``InsufficientData`` (never a false alarm)."""
    min_reference_samples: int = 100
    significance: str = "0.05"
    """Every method also needs its p-value below this to call drift (guards small windows); :func:`compare`
    holds each of k checked features to ``significance / k``, so this bounds the window's false alarms."""
    features: Sequence[str] | None = None
    """Only these features (default: every feature of the reference profile)."""
    epsilon: float = EPSILON


@dataclass(frozen=True, slots=True)
class Distribution:
    """A binned distribution for plots: labels and proportions of reference and current."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FeatureResult:
    name: str
    kind: str
    method: str
    score: float
    threshold: float
    threshold_text: str
    drifted: bool
    status: str
    n_reference: int
    n_current: int
    p_value: float | None = None
    statistic: float | None = None
    distribution: Distribution | None = None
    message: str = ""

    @property
    def score_text(self) -> str:
        return format_score(self.score)


@dataclass(frozen=True, slots=True)
class DriftResult:
    drifted: bool
    status: str
    """``Drifted``, ``NoDrift`` or ``InsufficientData``."""
    score: float
    """Share of the checked features that drifted."""
    drift_share: float
    samples: int
    features: tuple[FeatureResult, ...]
    reference_version: str | None = None

    @property
    def score_text(self) -> str:
        return format_score(self.score)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)


def normalise_method(method: str) -> str:
    name = method.strip().lower()
    name = METHOD_ALIASES.get(name, name)
    if name not in METHODS:
        raise DriftSpecError(f"unknown drift method {method!r}; use one of {', '.join(METHODS)}")
    return name


def _rule_for(name: str, kind: str, spec: DriftSpec, explicit: Mapping[str, FeatureRule]) -> tuple[str, str]:
    rule = explicit.get(name)
    if rule is not None:
        method = normalise_method(rule.method)
        if kind not in METHOD_KINDS[method]:
            raise DriftSpecError(
                f"features[{name}].method {rule.method!r} does not apply to a {kind} feature; use "
                + " or ".join(m for m in METHODS if kind in METHOD_KINDS[m])
            )
        return method, rule.threshold
    method = normalise_method(spec.default_rule.method)
    if kind not in METHOD_KINDS[method]:
        return "psi", DEFAULT_THRESHOLDS["psi"]  # e.g. default ks -> categorical features use psi
    return method, spec.default_rule.threshold


def _sorted_current(values: npt.ArrayLike) -> F32Array:
    array = np.asarray(values)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    ordered = np.sort(array.ravel())
    if ordered.size and np.isnan(ordered[-1]):  # NaN sorts last: cut them with one binary search
        ordered = ordered[: int(np.searchsorted(ordered, np.float32("nan"), side="left"))]
    return ordered


def _edge_labels(edges: F32Array) -> tuple[str, ...]:
    points = [format_score(float(e)) for e in edges]
    if not points:
        return ("all",)
    return (
        f"< {points[0]}",
        *(f"[{a}, {b})" for a, b in itertools.pairwise(points)),
        f">= {points[-1]}",
    )


def _insufficient(
    name: str, kind: str, method: str, threshold: float, text: str, spec: DriftSpec, n_reference: int, m: int
) -> FeatureResult | None:
    """The ``InsufficientData`` result when either side has too few values (None when both have enough)."""
    if m >= spec.min_samples and n_reference >= spec.min_reference_samples:
        return None
    return FeatureResult(
        name,
        kind,
        method,
        float("nan"),
        threshold,
        text,
        False,
        INSUFFICIENT_DATA,
        n_reference,
        m,
        message=f"{m} current / {n_reference} reference values, need {spec.min_samples} / {spec.min_reference_samples}",
    )


def _judge(
    name: str,
    kind: str,
    method: str,
    threshold: float,
    text: str,
    spec: DriftSpec,
    reference_counts: IntArray,
    current_counts: IntArray,
    labels: tuple[str, ...],
    n_reference: int,
    m: int,
    tested: tuple[float, float, float] | None = None,
) -> FeatureResult:
    """Score and verdict of one feature from its bucket counts on both sides.

    ``tested`` is (score, p-value, statistic) of a method that is its own test (``ks``: D; ``chi2``:
    Cohen's w and the chi-squared statistic). ``psi`` and ``jensenshannon`` score the buckets and take
    the p-value of the chi-squared two-sample test on the same buckets. Every method calls drift only
    when score > threshold and p-value < significance: the effect is large enough to matter and too
    large to be sampling noise (a PSI of 0.2 on 16 categories is noise with 200 values per side).
    """
    if tested is not None:
        score, p_value, statistic = tested
    else:
        if method == "psi":
            score = psi(reference_counts, current_counts, epsilon=spec.epsilon)
        else:
            score = jensenshannon(reference_counts, current_counts)
        statistic, p_value, _ = chi2_two_sample(reference_counts, current_counts)
    significance = parse_decimal(spec.significance, what="significance", high=1.0)
    drifted = score > threshold and p_value < significance
    return FeatureResult(
        name,
        kind,
        method,
        score,
        threshold,
        text,
        drifted,
        DRIFTED if drifted else NO_DRIFT,
        n_reference,
        m,
        p_value=p_value,
        statistic=statistic,
        distribution=Distribution(
            labels, tuple(proportions(reference_counts).tolist()), tuple(proportions(current_counts).tolist())
        ),
        message=_not_significant(p_value, significance) if score > threshold and not drifted else "",
    )


def _not_significant(p_value: float, level: float, note: str = "") -> str:
    return f"score above the threshold, but p-value {format_score(p_value)} is not below {format_score(level)}{note}"


def within_family(results: Sequence[FeatureResult], significance: float) -> list[FeatureResult]:
    """Hold each of the k checked features to ``significance / k`` (Bonferroni): unchanged data then
    alarms *any* feature of the window with probability at most ``significance``, however many features
    are monitored. Only small windows notice (28 features of ~220 values: PSI 0.2 had p ~0.01, noise);
    on large windows a score above a usual threshold has a p-value far below either level."""
    k = sum(1 for r in results if r.status in (DRIFTED, NO_DRIFT))
    if k < 2:
        return list(results)
    level = significance / k
    note = f" (significance {format_score(significance)} over {k} checked features)"
    return [
        replace(r, drifted=False, status=NO_DRIFT, message=_not_significant(r.p_value, level, note))
        if r.drifted and r.p_value is not None and not r.p_value < level
        else r
        for r in results
    ]


def compare_numeric(
    ref: NumericProfile,
    current: npt.ArrayLike,
    method: str,
    threshold: float,
    spec: DriftSpec,
    *,
    threshold_text: str = "",
) -> FeatureResult:
    """Compare one numeric feature; ``current`` is any float array (NaN = missing)."""
    raw = np.asarray(current)
    if raw.dtype != np.float32:
        raw = raw.astype(np.float32)
    raw = raw.ravel()
    use_grid = ref.grid is not None and raw.size >= GRID_MIN_CURRENT
    if use_grid:
        if np.isnan(raw).any():
            raw = raw[~np.isnan(raw)]
        cur = raw
    else:
        cur = _sorted_current(raw)
    m = int(cur.size)
    text = threshold_text or format_score(threshold)
    short = _insufficient(ref.name, "numeric", method, threshold, text, spec, ref.count, m)
    if short is not None:
        return short
    ks_d: float | None = None
    if use_grid and ref.grid is not None:
        ks_d, cur_counts = ks_and_bins_unsorted(ref.sample, ref.count, ref.grid, cur, ref.edges)
    else:
        cur_counts = bin_counts_sorted(cur, ref.edges)
    tested: tuple[float, float, float] | None = None
    if method == "ks":
        d = ks_d if ks_d is not None else ks_statistic_presorted(ref.sample, cur)
        tested = (d, ks_pvalue(d, ref.count, m), d)
    labels = _edge_labels(ref.edges)
    return _judge(
        ref.name, "numeric", method, threshold, text, spec, ref.bin_counts, cur_counts, labels, ref.count, m, tested
    )


def categorical_counts(ref: CategoricalProfile, current: Iterable[Any] | npt.ArrayLike) -> tuple[IntArray, int]:
    """Current counts aligned to the reference categories plus ``__other__``; and the null count."""
    kept, nulls = _categorical_values(current)
    counts = np.zeros(len(ref.categories) + 1, dtype=np.int64)
    if kept.size:
        uniques, n = np.unique(kept, return_counts=True)
        index = ref.index()
        slots = np.fromiter(
            (index.get(str(u), len(ref.categories)) for u in uniques), dtype=np.int64, count=uniques.size
        )
        np.add.at(counts, slots, n.astype(np.int64))
    return counts, nulls


def compare_categorical(
    ref: CategoricalProfile,
    current: Iterable[Any] | npt.ArrayLike,
    method: str,
    threshold: float,
    spec: DriftSpec,
    *,
    threshold_text: str = "",
) -> FeatureResult:
    """Compare one categorical feature (unseen categories land in ``__other__``)."""
    cur_counts, _ = categorical_counts(ref, current)
    m = int(cur_counts.sum())
    text = threshold_text or format_score(threshold)
    short = _insufficient(ref.name, "categorical", method, threshold, text, spec, ref.count, m)
    if short is not None:
        return short
    tested: tuple[float, float, float] | None = None
    if method == "chi2":
        statistic, p_value, _ = chi2_two_sample(ref.counts, cur_counts)
        tested = (cohens_w(ref.counts, cur_counts), p_value, statistic)
    labels = (*ref.categories, OTHER)
    return _judge(
        ref.name, "categorical", method, threshold, text, spec, ref.counts, cur_counts, labels, ref.count, m, tested
    )


def validate_spec(spec: DriftSpec) -> None:
    """Raise :class:`DriftSpecError` naming the field for any invalid value."""
    parse_decimal(spec.drift_share, what="driftShare", high=1.0)
    parse_decimal(spec.significance, what="significance", high=1.0)
    if spec.min_samples < 1:
        raise DriftSpecError(f"minSamples must be >= 1, got {spec.min_samples}")
    for rule in (*spec.rules, spec.default_rule):
        normalise_method(rule.method)
        parse_decimal(rule.threshold, what=f"features[{rule.name}].threshold")
    names = [r.name for r in spec.rules]
    if len(names) != len(set(names)):
        raise DriftSpecError(
            "features lists a feature twice: " + ", ".join(sorted({n for n in names if names.count(n) > 1}))
        )


def compare(
    reference: ReferenceProfile, current: Mapping[str, Any], spec: DriftSpec, *, samples: int | None = None
) -> DriftResult:
    """Compare the current window with the reference profile.

    ``current`` maps feature names to arrays (numeric) or sequences of values (categorical). Features
    of the profile absent from ``current`` are reported ``Missing`` and do not count. ``samples`` is
    the window size reported (default: the largest current column).
    """
    validate_spec(spec)
    explicit = {r.name: r for r in spec.rules}
    names = list(spec.features) if spec.features is not None else list(reference.features)
    names += [rule_name for rule_name in explicit if rule_name not in names]
    results: list[FeatureResult] = []
    window = 0
    for name in names:
        prof = reference.features.get(name)
        if prof is not None:
            _rule_for(name, prof.kind, spec, explicit)  # an inapplicable method is an error even if missing
        if prof is None or name not in current:
            where = "reference profile" if prof is None else "current window"
            rule = explicit.get(name, spec.default_rule)
            results.append(
                FeatureResult(
                    name,
                    prof.kind if prof else "unknown",
                    normalise_method(rule.method),
                    float("nan"),
                    parse_decimal(rule.threshold, what="threshold"),
                    rule.threshold,
                    False,
                    MISSING,
                    prof.count if prof else 0,
                    0,
                    message=f"not in the {where}",
                )
            )
            continue
        method, threshold_text = _rule_for(name, prof.kind, spec, explicit)
        threshold = parse_decimal(threshold_text, what=f"features[{name}].threshold")
        if isinstance(prof, NumericProfile):
            result = compare_numeric(prof, current[name], method, threshold, spec, threshold_text=threshold_text)
        else:
            result = compare_categorical(prof, current[name], method, threshold, spec, threshold_text=threshold_text)
        window = max(window, result.n_current)
        results.append(result)
    results = within_family(results, parse_decimal(spec.significance, what="significance", high=1.0))
    checked = [r for r in results if r.status in (DRIFTED, NO_DRIFT)]
    n_drifted = sum(1 for r in checked if r.drifted)
    share = n_drifted / len(checked) if checked else 0.0
    drift_share = parse_decimal(spec.drift_share, what="driftShare", high=1.0)
    if not checked:
        status, drifted = INSUFFICIENT_DATA, False
    else:
        drifted = n_drifted > 0 and share >= drift_share
        status = DRIFTED if drifted else NO_DRIFT
    return DriftResult(
        drifted=drifted,
        status=status,
        score=share,
        drift_share=drift_share,
        samples=samples if samples is not None else window,
        features=tuple(results),
        reference_version=reference.model_version,
    )

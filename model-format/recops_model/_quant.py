"""An int8 first pass for factor models, made exact by a proven error bound and float32 rescoring.

Scoring every item in float32 is the cost of a factors model (100k items x 64 factors: 12.8 MFLOP a
user). The same products in int8 run four times as many multiply-adds per instruction (AVX-512 VNNI,
``_qscore.c``) over a matrix a quarter the size. Quantisation changes scores, so they only choose
candidates; every answer is computed from the float32 factors:

* every item row ``v`` is stored as ``s * q`` (``q`` int8, per-item scale ``s``), every user row ``u`` as
  ``t * p``, with the residuals ``r = v - s*q`` and ``ru = u - t*p``. The approximate score
  ``a = t*s*(p.q)`` then differs from ``u.v`` by at most ``|u.r| + |ru.(s*q)| <= |u|*max|r| + |ru|*max|s*q|``
  (Cauchy-Schwarz), plus float rounding: a per-user ``beta``, computed once in float64 at load;
* if ``theta`` is a lower bound of the k-th largest approximate score among the items a request allows,
  the k-th largest true score is at least ``theta - beta``, so no item with ``a < theta - 2*beta`` (the
  ``margin``) can be in the top-k;
* the kernel keeps, per user, only the largest approximate score of each group of ``GROUP`` (64)
  consecutive items, over the items of the requested category (the max pass of ``_qscore.c``). With the
  groups holding a seen or excluded item left out, the k-th largest maximum of up to 512 unions of groups
  is such a ``theta`` (k disjoint sets each hold an allowed item that large). The groups whose maximum
  reaches ``theta - margin`` are scored again, and the allowed items reaching it rescored in float32: the
  exact top-k, ties by lower item index (:meth:`QuantIndex.topk`). A user it cannot bound (fewer allowed
  items than k, non-finite factors, a margin so wide that a float32 pass is cheaper) is handed back.

The kernel is a plain shared library built with the package (``hatch_build.py``) and loaded with ctypes.
Where it is missing (no compiler at install, a CPU without AVX-512 VNNI, ``RECOPS_INT8_PREFILTER=0``)
:func:`index_for` returns ``None`` and scoring stays float32 throughout. Below ``MIN_ITEMS`` items a
float32 pass is as fast and the index is not built.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._format import RecModel

# below this many items a float32 pass costs next to nothing (64 factors, this machine, per user, int8 vs
# float32: 2,048 items 9.5 vs 12.7 us in batches of 16, 29 vs 41 us alone; 10k items 15 vs 30 and 42 vs 85)
MIN_ITEMS = 2048
_WIDTHS = (8, 16, 32)  # kernels exist for these many 4-byte groups: up to 32, 64 and 128 factors
_CHUNK = 65536  # rows quantised at once (bounds the float64 working set at load)
_LIB_NAME = "_qscore.so"


class _CIndex(ctypes.Structure):
    """``qindex_t`` of _qscore.c: the addresses the kernels read, filled once per index."""

    _fields_ = [
        ("items", ctypes.c_void_p),
        ("iscale", ctypes.c_void_p),
        ("n", ctypes.c_int64),
        ("f4", ctypes.c_int64),
        ("users", ctypes.c_void_p),
        ("uscale", ctypes.c_void_p),
        ("corr", ctypes.c_void_p),
        ("V", ctypes.c_void_p),
        ("U", ctypes.c_void_p),
        ("f", ctypes.c_int64),
        ("margin", ctypes.c_void_p),
        ("seen_ptr", ctypes.c_void_p),
        ("seen_idx", ctypes.c_void_p),
    ]


def _load_library() -> ctypes.CDLL | None:
    if os.environ.get("RECOPS_INT8_PREFILTER", "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    path = Path(__file__).with_name(_LIB_NAME)
    if not path.is_file():
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    lib.qscore_supported.restype = ctypes.c_int
    lib.qscore_supported.argtypes = []
    if not lib.qscore_supported():
        return None
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.qscore_group_items.restype = ctypes.c_int
    lib.qscore_group_items.argtypes = []
    for name, args in (
        ("qscore_blocks", [ptr, ptr, ptr, i64, ptr]),
        ("qscore_topk", [ptr, ptr, i64, i64, ctypes.c_int, ptr, i64, ptr, i64, i64, ptr, ptr, ptr, ptr, ptr]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, args
    return lib


_LIB = _load_library()
# consecutive items behind one maximum of the kernel's max pass (GB * 16 in _qscore.c)
GROUP = int(_LIB.qscore_group_items()) if _LIB is not None else 64


def available() -> bool:
    """Whether the int8 kernel runs here (built, this CPU has AVX-512 VNNI, not switched off)."""
    return _LIB is not None


def _quantise(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row symmetric int8 of float32 ``rows``, zero-padded to ``width`` columns: ``(q, scale,
    |residual|, |scale*q|)``, the norms in float64 from the exact residual ``row - scale*q``."""
    n, f = rows.shape
    q = np.zeros((n, width), dtype=np.int8)
    scale = np.empty(n, dtype=np.float32)
    res_norm = np.empty(n, dtype=np.float64)
    deq_norm = np.empty(n, dtype=np.float64)
    for lo in range(0, n, _CHUNK):
        x = rows[lo : lo + _CHUNK].astype(np.float64)
        bad = ~np.isfinite(x).all(axis=1)
        x[bad] = 0.0  # quantised as zeros, bounded by an infinite residual: never trusted
        s = (np.abs(x).max(axis=1) / 127.0).astype(np.float32)
        s[s == 0] = 1.0  # an all-zero row: q = 0, exact
        qc = np.clip(np.rint(x / s[:, None]), -127, 127)
        deq = s.astype(np.float64)[:, None] * qc  # exact: 24-bit scale times a 7-bit integer
        q[lo : lo + x.shape[0], :f] = qc.astype(np.int8)
        scale[lo : lo + x.shape[0]] = s
        res_norm[lo : lo + x.shape[0]] = np.where(bad, np.inf, np.linalg.norm(x - deq, axis=1))
        deq_norm[lo : lo + x.shape[0]] = np.linalg.norm(deq, axis=1)
    return q, scale, res_norm, deq_norm


@dataclass(frozen=True, eq=False)
class QuantIndex:
    """The int8 copies of a factors model and each user's error bound (see the module docstring)."""

    n_items: int
    groups: int  # 4-byte groups per row: 8, 16 or 32
    items: np.ndarray  # uint8 q + 128 in the kernel's layout: [blocks of 16 items][groups][16][4]
    item_scale: np.ndarray  # float32 (n_items,)
    users: np.ndarray  # int8 (n_users, 4 * groups)
    user_scale: np.ndarray  # float32 (n_users,)
    user_corr: np.ndarray  # int32 (n_users,): 128 * sum(p)
    margin: np.ndarray  # float32 (n_users,): 2 * beta, rounded up; inf where a user cannot be bounded
    item_factors: np.ndarray  # the model's float32 factors, C-contiguous: rescoring reads them in place
    user_factors: np.ndarray
    seen_ptr: np.ndarray  # int64 (n_users + 1,): the model's seen items, CSR
    seen_idx: np.ndarray  # int32, ascending within each user
    _by_category: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # every address the kernels read, taken once (the arrays are never replaced): one pointer a call
        c = _CIndex(
            self.items.ctypes.data,
            self.item_scale.ctypes.data,
            self.n_items,
            self.groups,
            self.users.ctypes.data,
            self.user_scale.ctypes.data,
            self.user_corr.ctypes.data,
            self.item_factors.ctypes.data,
            self.user_factors.ctypes.data,
            self.item_factors.shape[1],
            self.margin.ctypes.data,
            self.seen_ptr.ctypes.data,
            self.seen_idx.ctypes.data,
        )
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_cp", ctypes.addressof(c))

    @property
    def n_groups(self) -> int:
        """Groups of ``GROUP`` consecutive items, padded to a multiple of 16 (the kernel's row of maxima)."""
        return -(-self.n_items // (GROUP * 16)) * 16

    def approx_scores(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_items) float32: every approximate score, bit for bit as the kernel compares them
        (for checks and diagnostics; serving never materialises these)."""
        assert _LIB is not None
        nb = -(-self.n_items // 16)
        at = np.repeat(np.ascontiguousarray(rows, dtype=np.int64), nb)
        cols = np.tile(np.arange(nb, dtype=np.int64), rows.shape[0])
        out = np.empty((at.shape[0], 16), dtype=np.float32)
        _check(_LIB.qscore_blocks(self._cp, at.ctypes.data, cols.ctypes.data, at.shape[0], out.ctypes.data))  # type: ignore[attr-defined]
        return out.reshape(rows.shape[0], nb * 16)[:, : self.n_items]

    def topk(
        self,
        rows: np.ndarray,
        k: int,
        *,
        seen: bool,
        exclude: np.ndarray,
        category: str | None,
        outside: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(top, values, ok)``: each user's exact top-k item indices (len(rows), k), best first with ties by
        lower index, their float32 scores, and whether it was found (``False``: score that user in full)."""
        assert _LIB is not None
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        b, ng = rows.shape[0], self.n_groups
        excl = exclude if exclude.shape[0] < 2 else np.unique(exclude)
        excl = np.ascontiguousarray(excl, dtype=np.int32)
        allowed = None if category is None or outside is None else self._allowed(category, outside).ctypes.data
        # one buffer for every output and work area (one address to take): top, values, group maxima, scratch
        n_top, n_gm, n_scratch = b * k, b * ng, ng + max(k, 512)
        work = np.empty(3 * n_top + n_gm + n_scratch + b, dtype=np.float32)  # top is int64: 2 floats each
        base = work.ctypes.data
        at_val, at_gm = 8 * n_top, 8 * n_top + 4 * n_top
        at_scratch = at_gm + 4 * n_gm
        at_ok = at_scratch + 4 * n_scratch
        rc = _LIB.qscore_topk(
            self._cp,  # type: ignore[attr-defined]
            rows.ctypes.data,
            b,
            k,
            int(seen),
            excl.ctypes.data,
            excl.shape[0],
            allowed,
            max(8 * k, self.n_items // 8),  # more items to rescore than this: a float32 pass is cheaper
            ng,
            base + at_gm,
            base + at_scratch,
            base,
            base + at_val,
            base + at_ok,
        )
        _check(rc)
        raw = work.view(np.uint8)
        top = raw[:at_val].view(np.int64).reshape(b, k)
        vals = raw[at_val:at_gm].view(np.float32).reshape(b, k)
        ok = raw[at_ok : at_ok + b].view(np.bool_)
        if not ok.all():
            top[~ok] = 0  # rows not found: unwritten, kept valid as indices
        return top, vals, ok

    def _allowed(self, category: str, outside: np.ndarray) -> np.ndarray:
        """Bit ``i % 16`` of word ``i // 16`` set where item ``i`` is in ``category`` (uint16), cached."""
        found = self._by_category.get(category)
        if found is None:
            inside = np.zeros(-(-self.n_items // 16) * 16, dtype=bool)
            inside[: self.n_items] = ~outside
            found = np.packbits(inside.reshape(-1, 16), axis=1, bitorder="little").view(np.uint16).ravel().copy()
            self._by_category[category] = found
        return found


def _check(rc: int) -> None:
    if rc != 0:
        raise RuntimeError("the int8 scoring kernel has no code for this factor width or CPU")


def build_index(model: RecModel) -> QuantIndex | None:
    """The int8 index of a factors model, or ``None`` where it does not apply (no kernel, another kind,
    fewer than ``MIN_ITEMS`` items, more than 128 factors, non-finite item factors)."""
    if _LIB is None or model.kind != "factors" or model.item_factors is None or model.user_factors is None:
        return None
    v, u = model.item_factors, model.user_factors
    n, f = v.shape
    groups = next((w for w in _WIDTHS if 4 * w >= f), None)
    if groups is None or n < MIN_ITEMS or not np.isfinite(v).all():
        return None
    width = 4 * groups
    q, iscale, res, deq = _quantise(v, width)
    nb = -(-n // 16)
    padded = np.zeros((nb * 16, width), dtype=np.uint8)
    padded[:n] = (q.astype(np.int16) + 128).astype(np.uint8)
    padded[n:] = 128  # q = 0 past the last item (never stored by the kernel)
    items = np.ascontiguousarray(padded.reshape(nb, 16, groups, 4).transpose(0, 2, 1, 3))
    p, uscale, ures, _ = _quantise(u, width)
    corr = (128 * p.astype(np.int32).sum(axis=1)).astype(np.int32)
    r_max, d_max = float(res.max(initial=0.0)), float(deq.max(initial=0.0))
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite users end with an infinite margin
        unorm = np.sqrt(np.square(u, dtype=np.float64).sum(axis=1))
        beta = unorm * r_max + ures * d_max
        # float rounding: the float32 rescoring (at most f+2 roundings of terms bounded by |u||v|) and the
        # kernel's int->float and two scale products, relative to |t p||s q| <= (|u|+|ru|)(|v|max+|r|max)
        beta += (f + 8) * 2.0**-23 * (unorm + ures) * (d_max + r_max)
        margin = (2.0 * beta * (1 + 2.0**-20)).astype(np.float32)
    margin[~np.isfinite(margin)] = np.inf
    margin = np.nextafter(margin, np.float32(np.inf))  # round the float32 cast up
    seen = model.seen
    seen_idx = seen.indices
    if seen_idx.dtype != np.int32 or not seen.has_sorted_indices:
        seen = seen.sorted_indices()
        seen_idx = seen.indices.astype(np.int32)
    seen_ptr = seen.indptr.astype(np.int64)
    # the kernel indexes with these unchecked: refuse a malformed matrix here (load_model already checks)
    sound = seen_ptr.shape == (u.shape[0] + 1,) and seen_ptr[0] == 0 and seen_ptr[-1] == seen_idx.shape[0]
    sound = sound and bool((np.diff(seen_ptr) >= 0).all())
    if not sound or (seen_idx.shape[0] and (seen_idx.min() < 0 or seen_idx.max() >= n)):
        return None
    vf, uf = np.ascontiguousarray(v, dtype=np.float32), np.ascontiguousarray(u, dtype=np.float32)
    return QuantIndex(n, groups, items, iscale, p, uscale, corr, margin, vf, uf, seen_ptr, seen_idx)


def index_for(model: RecModel) -> QuantIndex | None:
    """The model's int8 index, built on first use and kept on the model (``None`` where it does not apply)."""
    cache = model.__dict__
    if "_quant_index" not in cache:
        cache["_quant_index"] = build_index(model)
    index: QuantIndex | None = cache["_quant_index"]
    return index

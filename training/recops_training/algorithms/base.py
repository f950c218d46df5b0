"""What every recommender algorithm provides, and the helpers they share.

An algorithm is fitted on a user x item matrix ``X`` (CSR, float32, one row per known user) and
ends up as one of the three *kinds* the model format (``recops_model``) can serve:

- ``popularity``: one score per item, the same for everyone;
- ``factors``: ``scores = U[u] @ V.T``;
- ``item_item``: ``scores = X[u] @ S`` with ``S`` sparse (CSR) or dense.

``score_batch`` computes exactly those formulas for a batch of users, so offline evaluation ranks
with the same arithmetic the model server uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Params(BaseModel):
    """Base of every algorithm's parameter model: camelCase keys, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


@dataclass
class FittedParts:
    """The arrays an algorithm leaves behind, in the shape of the model format's kinds."""

    kind: str  # "popularity" | "factors" | "item_item"
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    similarity: sp.csr_matrix | np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Recommender(ABC):
    """A recommender algorithm: ``fit(X)`` then ``score_batch(X_batch, rows)``."""

    name: ClassVar[str]
    params_model: ClassVar[type[Params]]
    kind: ClassVar[str]

    def __init__(self, params: Params, seed: int = 0) -> None:
        self.params = params
        self.seed = seed
        self.parts: FittedParts | None = None
        self.popularity: np.ndarray | None = None

    def fit(self, X: sp.csr_matrix) -> Recommender:
        X = sp.csr_matrix(X, dtype=np.float32)
        self.popularity = item_popularity(X)
        self.parts = self._fit(X)
        return self

    @abstractmethod
    def _fit(self, X: sp.csr_matrix) -> FittedParts: ...

    def score_batch(self, X_batch: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """Dense scores (len(rows) x n_items) for the users at ``rows`` of the fitted matrix."""
        parts = self._require_fitted()
        return score_parts(parts, self.popularity, X_batch, rows)

    def _require_fitted(self) -> FittedParts:
        if self.parts is None or self.popularity is None:
            raise RuntimeError(f"algorithm {self.name!r} was used before fit()")
        return self.parts


def score_parts(
    parts: FittedParts, popularity: np.ndarray | None, X_batch: sp.csr_matrix, rows: np.ndarray
) -> np.ndarray:
    """The serving formula of each kind, for a batch of users."""
    if parts.kind == "popularity":
        assert popularity is not None
        return np.broadcast_to(popularity.astype(np.float32), (len(rows), popularity.shape[0])).copy()
    if parts.kind == "factors":
        assert parts.user_factors is not None and parts.item_factors is not None
        return np.asarray(parts.user_factors[rows] @ parts.item_factors.T, dtype=np.float32)
    if parts.kind == "item_item":
        S = parts.similarity
        out = X_batch @ S
        if sp.issparse(out):
            out = out.toarray()
        return np.asarray(out, dtype=np.float32)
    raise ValueError(f"unknown model kind {parts.kind!r}")


def item_popularity(X: sp.csr_matrix) -> np.ndarray:
    """Share of users who interacted with each item (0..1): the popularity every run is compared with."""
    n_users = max(X.shape[0], 1)
    counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
    return counts / np.float32(n_users)


def topn_per_row(M: sp.spmatrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of every row of a sparse matrix (vectorised, no Python loop
    over rows): sort all entries by (row, -value) once and keep those whose rank in the row is < n."""
    M = sp.csr_matrix(M)
    M.eliminate_zeros()
    if M.nnz == 0:
        return M
    row = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    order = np.lexsort((-M.data, row))
    row_sorted = row[order]
    rank = np.arange(M.nnz) - M.indptr[row_sorted]
    keep = order[rank < n]
    out = sp.csr_matrix((M.data[keep], (row[keep], M.indices[keep])), shape=M.shape, dtype=np.float32)
    out.sort_indices()
    return out


def topn_dense(D: np.ndarray, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest positive entries of every row of a dense block, as CSR (vectorised:
    one ``argpartition`` for the whole block)."""
    rows, cols = D.shape
    idx = np.argpartition(-D, n - 1, axis=1)[:, :n] if n < cols else np.broadcast_to(np.arange(cols), D.shape)
    vals = np.take_along_axis(D, idx, axis=1)
    keep = vals > 0
    r = np.broadcast_to(np.arange(rows)[:, None], idx.shape)[keep]
    out = sp.csr_matrix((vals[keep].astype(np.float32), (r, idx[keep])), shape=D.shape, dtype=np.float32)
    out.sort_indices()
    return out


def column_blocks(n_cols: int, n_rows: int, budget: int = 4_000_000) -> list[slice]:
    """Column slices whose dense (n_rows x width) block stays within ``budget`` cells."""
    width = max(1, min(n_cols, budget // max(n_rows, 1)))
    return [slice(s, min(s + width, n_cols)) for s in range(0, n_cols, width)]

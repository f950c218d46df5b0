"""Item-based k-nearest neighbours: shrunk cosine similarity, top-N neighbours per item, sparse.

``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)`` where ``x_i`` is item i's column of the
interaction matrix. Computed a block of items at a time (sparse products, bounded memory); each
item keeps only its ``neighbors`` most similar items, so ``S`` stays sparse (n_items x neighbors).
Scores: ``X[u] @ S``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .base import FittedParts, Params, Recommender, topn_dense, topn_per_row


class ItemKNNParams(Params):
    neighbors: int = Field(100, ge=1, le=5000, description="neighbours kept per item")
    shrink: float = Field(10.0, ge=0, description="shrinkage added to the cosine denominator")


def row_blocks(n_rows: int, n_cols: int, budget: int = 8_000_000) -> list[slice]:
    height = max(1, min(n_rows, budget // max(n_cols, 1)))
    return [slice(s, min(s + height, n_rows)) for s in range(0, n_rows, height)]


def cosine_topn(X: sp.csr_matrix, neighbors: int, shrink: float) -> sp.csr_matrix:
    n_items = X.shape[1]
    Xt = sp.csr_matrix(X.T)
    norms = np.sqrt(np.asarray(Xt.multiply(Xt).sum(axis=1)).ravel()).astype(np.float32)
    blocks = []
    for b in row_blocks(n_items, n_items):
        C = Xt[b] @ X  # (block x n_items) co-occurrence, sparse product
        if C.nnz > 0.05 * C.shape[0] * C.shape[1]:
            # dense enough: similarity and top-N on a dense block (bounded by row_blocks' budget)
            D = C.toarray().astype(np.float32, copy=False)
            D /= norms[b, None] * norms[None, :] + np.float32(shrink) + np.float32(1e-9)
            D[np.arange(D.shape[0]), np.arange(b.start, b.stop)] = 0.0  # an item is not its own neighbour
            blocks.append(topn_dense(D, neighbors))
        else:
            C = sp.csr_matrix(C, dtype=np.float32)
            rows = np.repeat(np.arange(b.start, b.stop), np.diff(C.indptr))
            C.data /= norms[rows] * norms[C.indices] + np.float32(shrink) + np.float32(1e-9)
            C.data[rows == C.indices] = 0.0
            blocks.append(topn_per_row(C, neighbors))
    S = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix(S, dtype=np.float32)


class ItemKNN(Recommender):
    name = "itemknn"
    params_model = ItemKNNParams
    kind = "item_item"

    def _fit(self, X: sp.csr_matrix) -> FittedParts:
        p: ItemKNNParams = self.params  # type: ignore[assignment]
        S = cosine_topn(X, p.neighbors, p.shrink)
        return FittedParts(kind="item_item", similarity=S, meta={"similarityNnz": int(S.nnz)})

"""RP3beta (Paudel et al. 2017; Dacrema et al. 2019): a three-step random walk item -> user -> item
whose arrival probabilities are divided by the target item's popularity to the power ``beta``.

It earns its place next to ItemKNN because ``beta`` explicitly trades accuracy against popularity
bias, which the evaluation report measures (mean popularity of recommended items). Sparse, computed
a block of items at a time, top-N per item. Scores: ``X[u] @ W``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .base import FittedParts, Params, Recommender, topn_dense, topn_per_row
from .itemknn import row_blocks


class RP3betaParams(Params):
    alpha: float = Field(1.0, gt=0, le=5, description="exponent on the transition probabilities")
    beta: float = Field(0.5, ge=0, le=2, description="popularity penalty exponent")
    neighbors: int = Field(100, ge=1, le=5000, description="neighbours kept per item")


def _row_normalise(M: sp.csr_matrix) -> sp.csr_matrix:
    M = sp.csr_matrix(M, dtype=np.float32, copy=True)
    sums = np.asarray(M.sum(axis=1)).ravel().astype(np.float32)
    sums[sums == 0] = 1.0
    M.data /= np.repeat(sums, np.diff(M.indptr))
    return M


class RP3beta(Recommender):
    name = "rp3beta"
    params_model = RP3betaParams
    kind = "item_item"

    def _fit(self, X: sp.csr_matrix) -> FittedParts:
        p: RP3betaParams = self.params  # type: ignore[assignment]
        Xa = sp.csr_matrix(X, dtype=np.float32, copy=True)
        Xa.data = np.power(Xa.data, p.alpha, dtype=np.float32)
        P_ui = _row_normalise(Xa)  # user -> item
        P_iu = _row_normalise(sp.csr_matrix(Xa.T))  # item -> user
        degree = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        penalty = np.power(np.maximum(degree, 1.0), -p.beta, dtype=np.float32)
        n_items = X.shape[1]
        blocks = []
        for b in row_blocks(n_items, n_items):
            W = P_iu[b] @ P_ui
            if W.nnz > 0.05 * W.shape[0] * W.shape[1]:  # dense enough: dense block, one argpartition
                D = W.toarray().astype(np.float32, copy=False)
                D *= penalty[None, :]
                D[np.arange(D.shape[0]), np.arange(b.start, b.stop)] = 0.0
                blocks.append(topn_dense(D, p.neighbors))
                continue
            W = sp.csr_matrix(W, dtype=np.float32)
            rows = np.repeat(np.arange(b.start, b.stop), np.diff(W.indptr))
            W.data *= penalty[W.indices]
            W.data[rows == W.indices] = 0.0
            blocks.append(topn_per_row(W, p.neighbors))
        S = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((n_items, n_items), dtype=np.float32)
        S = sp.csr_matrix(S, dtype=np.float32)
        return FittedParts(kind="item_item", similarity=S, meta={"similarityNnz": int(S.nnz)})

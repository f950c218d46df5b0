"""EASE^R (Steck 2019): closed-form shallow autoencoder,
``P = (X^T X + l2 I)^-1``, ``B = -P / diag(P)``, ``diag(B) = 0``; scores ``X[u] @ B``.

Dense n_items x n_items, cubic in the catalogue size: a guard (``maxItems``) refuses catalogues
where it would not fit in memory or time, with a message naming the parameter.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from ..errors import InvalidInput
from .base import FittedParts, Params, Recommender


class EASEParams(Params):
    l2: float = Field(200.0, gt=0, description="L2 regularisation added to the Gram matrix diagonal")
    max_items: int = Field(8000, ge=1, le=40000, description="refuse catalogues larger than this")


class EASE(Recommender):
    name = "ease"
    params_model = EASEParams
    kind = "item_item"

    def _fit(self, X: sp.csr_matrix) -> FittedParts:
        p: EASEParams = self.params  # type: ignore[assignment]
        n_items = X.shape[1]
        if n_items > p.max_items:
            gib = n_items * n_items * 8 * 2 / 2**30
            raise InvalidInput(
                f"algorithm 'ease' needs a dense {n_items} x {n_items} matrix (~{gib:.1f} GiB) but "
                f"params.maxItems is {p.max_items}: raise maxItems if the node has the memory, or use "
                "itemknn / rp3beta / puresvd for this catalogue",
                reason="CatalogueTooLarge",
            )
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices(n_items)] += p.l2
        c, low = scipy.linalg.cho_factor(G, overwrite_a=True, check_finite=False)
        P = scipy.linalg.cho_solve((c, low), np.eye(n_items), overwrite_b=True, check_finite=False)
        B = P / (-np.diag(P))
        B[np.diag_indices(n_items)] = 0.0
        return FittedParts(kind="item_item", similarity=np.ascontiguousarray(B, dtype=np.float32))

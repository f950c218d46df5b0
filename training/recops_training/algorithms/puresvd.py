"""PureSVD (Cremonesi et al. 2010): truncated SVD of the interaction matrix, ``X ~ U S V^T``;
a user's scores are ``x_u V V^T`` (fold-in), i.e. user factors ``x_u V`` and item factors ``V``.
Uses scikit-learn's randomized ``TruncatedSVD``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from sklearn.decomposition import TruncatedSVD

from .base import FittedParts, Params, Recommender


class PureSVDParams(Params):
    factors: int = Field(64, ge=1, le=2048, description="number of latent factors")
    iterations: int = Field(7, ge=1, le=100, description="power iterations of the randomized SVD")


class PureSVD(Recommender):
    name = "puresvd"
    params_model = PureSVDParams
    kind = "factors"

    def _fit(self, X: sp.csr_matrix) -> FittedParts:
        p: PureSVDParams = self.params  # type: ignore[assignment]
        k = min(p.factors, max(1, min(X.shape) - 1))
        svd = TruncatedSVD(n_components=k, n_iter=p.iterations, random_state=self.seed, algorithm="randomized")
        svd.fit(X)
        V = np.ascontiguousarray(svd.components_.T, dtype=np.float32)  # (n_items x k)
        U = np.asarray(X @ V, dtype=np.float32)  # fold-in: x_u V
        meta: dict[str, Any] = {"factors": int(k), "explainedVariance": float(svd.explained_variance_ratio_.sum())}
        if k != p.factors:
            meta["factorsClamped"] = f"factors reduced from {p.factors} to {k}: fewer users or items than factors"
        return FittedParts(kind="factors", user_factors=U, item_factors=V, meta=meta)

"""The popularity baseline: every user gets the items most users interacted with."""

from __future__ import annotations

import scipy.sparse as sp

from .base import FittedParts, Params, Recommender


class PopularityParams(Params):
    pass


class Popularity(Recommender):
    name = "popularity"
    params_model = PopularityParams
    kind = "popularity"

    def _fit(self, X: sp.csr_matrix) -> FittedParts:
        return FittedParts(kind="popularity", meta={"items": int(X.shape[1])})

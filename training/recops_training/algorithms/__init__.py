"""Recommender algorithms, chosen by name with parameters validated by a pydantic model each."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInput
from .base import FittedParts, Params, Recommender, item_popularity, score_parts, topn_per_row
from .ease import EASE, EASEParams
from .itemknn import ItemKNN, ItemKNNParams
from .popularity import Popularity, PopularityParams
from .puresvd import PureSVD, PureSVDParams
from .rp3beta import RP3beta, RP3betaParams

ALGORITHMS: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, ItemKNN, PureSVD, EASE, RP3beta)}

__all__ = [
    "ALGORITHMS",
    "EASE",
    "EASEParams",
    "FittedParts",
    "ItemKNN",
    "ItemKNNParams",
    "Params",
    "Popularity",
    "PopularityParams",
    "PureSVD",
    "PureSVDParams",
    "RP3beta",
    "RP3betaParams",
    "Recommender",
    "build",
    "item_popularity",
    "score_parts",
    "topn_per_row",
    "validate_params",
]


def validate_params(name: str, params: dict[str, Any] | None) -> Params:
    """Validate ``params`` for algorithm ``name``; raise ``InvalidInput`` naming the bad field."""
    cls = ALGORITHMS.get(name)
    if cls is None:
        raise InvalidInput(
            f"algorithm.name {name!r} is not a known algorithm; use one of: {', '.join(sorted(ALGORITHMS))}",
            reason="UnknownAlgorithm",
        )
    try:
        return cls.params_model.model_validate(params or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(f.alias or n for n, f in cls.params_model.model_fields.items())) or "none"
                problems.append(f"algorithm.params.{where} is not a parameter of {name!r} (known: {known})")
            else:
                problems.append(f"algorithm.params.{where}: {err['msg']}")
        raise InvalidInput("; ".join(problems), reason="InvalidAlgorithmParams") from None


def build(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Recommender:
    """An unfitted algorithm by name."""
    validated = validate_params(name, params)
    return ALGORITHMS[name](validated, seed=seed)

"""The promotion gate: the challenger against the popularity baseline and against the champion scored
on the challenger's own holdout.

A metric is only comparable on one holdout. The champion's logged metric came from the champion's own,
older holdout; after drift that number says nothing about today's traffic (a retrained model could
never beat it), so the gate scores the current champion on the challenger's holdout:

- the registered champion version is loaded in the served format (``recops_model``: the manifest is
  verified before anything is read) and ranked with ``recops_model.recommend_batch``, the model
  server's own scoring: users the champion knows get its formula (its stored history or factors),
  users it does not know get its popularity fallback, exactly as served. Only the holdout's catalogue
  is ranked: items the champion does not know it cannot recommend, and champion items outside the
  catalogue are skipped (they could only be misses, so skipping them can only help the champion);
- the evaluation code then scores those rankings on the same holdout, the same users, the same k and
  the same variant as the challenger (new variant: seen items excluded, as served by default; repeat
  variant: nothing excluded, as served with ``excludeSeen=false``).

Two guards keep the number honest:

- same holdout: when the champion's own run evaluated this very holdout (same snapshot version, cut,
  user sample and seed), its logged metric is already the out-of-sample number (its holdout-fitted
  model), while re-scoring the registered, fully refitted model would be in-sample; the logged metric
  is used (``basis="sameHoldout"``);
- in-sample: ``overlap`` is the share of the holdout's new relevant interactions that the champion was
  trained on (by ids, so it is measured on the data, not guessed from dates). A champion trained before
  the cut has a few percent (items a user had before the new snapshot's window; as served, it does not
  recommend them again); one refitted on the test period has ~100%, and its score there measures
  nothing (served, it would exclude exactly the interactions to be found). Above
  :data:`MAX_CHAMPION_OVERLAP` the gate refuses and says how to fix it.

If the champion cannot be loaded or scored (artifact missing, digest mismatch, not a Recops model), the
gate refuses instead of promoting blind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .evaluation import Holdout, ScoreFn, evaluate

MAX_CHAMPION_OVERLAP = 0.2
"""Refuse to compare when the champion was trained on more than this share of the holdout's new
relevant interactions (champions trained before the cut showed 3-7% on the synthetic worlds of the
tests; one refitted on the same period has 100%)."""

_LABELS = {"hr": "HR", "precision": "Precision", "recall": "Recall", "ndcg": "NDCG", "map": "MAP"}


def metric_label(metric: str) -> str:
    """``ndcg_at_10`` -> ``NDCG@10``, ``recall_at_20_repeat`` -> ``Recall@20 (repeat)``."""
    name, _, rest = metric.partition("_at_")
    k, _, variant = rest.partition("_")
    label = f"{_LABELS.get(name, name)}@{k}" if k else metric
    return f"{label} ({variant})" if variant else label


def metric_k(metric: str) -> int:
    return int(metric.split("_at_")[1].split("_")[0])


def is_repeat_variant(metric: str) -> bool:
    return metric.endswith("_repeat")


@dataclass(frozen=True)
class ChampionScore:
    """The current champion measured on the challenger's holdout (or why it could not be)."""

    version: str
    value: float | None = None
    basis: str = "rescored"  # "rescored" (registered model ranked on this holdout) | "sameHoldout" (its run's own)
    overlap: float | None = None  # share of this holdout's new relevant interactions the champion trained on
    problem: str | None = None  # CamelCase reason when it could not be scored
    detail: str = ""

    def to_result(self, metric: str) -> dict[str, str]:
        """The compact form for the job's result document (strings, as the status schema wants)."""
        out = {"version": self.version, "metric": metric, "basis": self.basis}
        if self.value is not None:
            out["value"] = f"{self.value:.4f}"
        if self.overlap is not None:
            out["holdoutOverlap"] = f"{self.overlap:.4f}"
        if self.problem:
            out["problem"] = self.problem
        return out


def same_holdout(champion_params: Mapping[str, str], this: Mapping[str, Any]) -> bool:
    """Whether the champion's run evaluated exactly this holdout: same snapshot version, cut, user sample
    size and seed (the params every run logs)."""
    keys = ("snapshotVersion", "holdoutCut", "maxUsers", "seed")
    return all(k in champion_params and str(champion_params[k]) == str(this.get(k)) for k in keys)


def _index_map(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For every id in ``target``: its position in ``source``, or -1."""
    return np.asarray(pd.Index(source).get_indexer(target), dtype=np.int64)


def champion_overlap(model: Any, holdout: Holdout) -> float:
    """Share of the holdout's new relevant (user, item) pairs that are in the champion's training data
    (its ``seen`` matrix, by ids). 0 when the holdout has none."""
    total = int(holdout.test_new.nnz)
    if total == 0:
        return 0.0
    rows = _index_map(model.user_ids, holdout.user_ids)  # holdout user -> champion row
    cols = _index_map(holdout.item_ids, model.item_ids)  # champion item -> holdout column
    known = np.flatnonzero(rows >= 0)
    seen = sp.csr_matrix(model.seen)[rows[known]].tocoo()
    keep = cols[seen.col] >= 0
    mapped = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (known[seen.row[keep]], cols[seen.col[keep]])),
        shape=holdout.test_new.shape,
    )
    return float(holdout.test_new.multiply(mapped).nnz) / total


def champion_score_fn(model: Any, holdout: Holdout, k: int, exclude_seen: bool) -> ScoreFn:
    """A score function over the holdout's users and catalogue that ranks like the model server serving
    ``model`` (``recops_model.recommend_batch``): rank r of the served list gets score ``width - r``,
    items the champion cannot recommend get -inf. ``width`` covers k plus the batch's longest history,
    so the evaluation's own exclusion of seen items still leaves k ranked items."""
    from recops_model import recommend_batch

    to_holdout = _index_map(holdout.item_ids, model.item_ids)  # champion item -> holdout column or -1
    outside = model.item_ids[to_holdout < 0].tolist()
    available = int((to_holdout >= 0).sum())
    n_items = len(holdout.item_ids)

    def score(X_batch: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), n_items), -np.inf, dtype=np.float32)
        width = min(k + int(np.diff(X_batch.indptr).max(initial=0)), available)
        if width < 1:
            return out
        users = holdout.user_ids[rows].tolist()
        recs = recommend_batch(model, users, width, exclude_seen=exclude_seen, exclude_items=outside)
        for j, rec in enumerate(recs):
            cols = to_holdout[np.asarray(rec.item_indices, dtype=np.int64)]
            out[j, cols] = np.arange(len(cols), 0, -1, dtype=np.float32)
        return out

    return score


def score_champion(
    version: str,
    load: Callable[[], Any],
    holdout: Holdout,
    metric: str,
    max_users: int | None,
    seed: int,
) -> ChampionScore:
    """Load the champion with ``load`` and score it on ``holdout`` for ``metric`` (see module doc).
    A load that raises ``ChampionUnavailable`` or ``recops_model.ModelRejected`` becomes a
    ``ChampionScore`` with ``problem`` set (the gate then refuses)."""
    from recops_model import ModelRejected

    from .errors import ChampionUnavailable

    try:
        model = load()
    except ChampionUnavailable as exc:
        return ChampionScore(version, problem=exc.reason, detail=exc.message)
    except ModelRejected as exc:
        return ChampionScore(version, problem=exc.reason, detail=exc.message)
    k = metric_k(metric)
    fn = champion_score_fn(model, holdout, k, exclude_seen=not is_repeat_variant(metric))
    metrics = evaluate(fn, holdout, ks=[k], max_users=max_users, seed=seed)
    return ChampionScore(version, value=float(metrics[metric]), overlap=champion_overlap(model, holdout))


def decide_promotion(
    *,
    policy: str,
    metric: str,
    value: float,
    baseline_value: float,
    champion: ChampionScore | None,
    margin: Decimal,
    relative: bool,
    this_version: str,
) -> tuple[bool, str, str]:
    """(promote, CamelCase reason, sentence naming the numbers compared)."""
    label = metric_label(metric)
    base = f"popularity {baseline_value:.4f}"
    if champion is not None and str(champion.version) == str(this_version):
        return True, "AlreadyChampion", f"version {this_version} already holds the alias (rerun)"
    if policy == "never":
        return False, "PolicyNever", "promotion.policy is 'never': the version was registered, the alias was left alone"
    if policy == "always":
        return True, "PolicyAlways", "promotion.policy is 'always': the alias was moved without comparison"
    if not value > baseline_value:
        return (
            False,
            "WorseThanBaseline",
            f"{label} {value:.4f} does not beat the popularity baseline {baseline_value:.4f}",
        )
    if champion is None:
        return (
            True,
            "NoChampion",
            f"{label} {value:.4f} beats the popularity baseline {baseline_value:.4f} and there was no champion yet",
        )
    cv = champion.value
    where = "on this same holdout" if champion.basis == "sameHoldout" else "re-scored on this holdout"
    if champion.problem or cv is None:
        return (
            False,
            "ChampionNotScored",
            f"champion v{champion.version} could not be scored on this holdout ({champion.problem}: "
            f"{champion.detail[:300]}), so {label} {value:.4f} was not compared with it; fix or re-point the "
            "alias, or set promotion.policy 'always' to promote without comparison",
        )
    if champion.overlap is not None and champion.overlap > MAX_CHAMPION_OVERLAP:
        return (
            False,
            "ChampionInSample",
            f"champion v{champion.version} was trained on {champion.overlap:.0%} of this holdout's new "
            f"interactions, so its score here ({label} {cv:.4f}) is no fair measure and {label} {value:.4f} was "
            "not compared with it; evaluate on a holdout after the champion's training data (newer snapshot or "
            "shorter evaluation.holdoutDays), or set promotion.policy 'always'",
        )
    need = Decimal(str(cv)) * (1 + margin / 100) if relative else Decimal(str(cv)) + margin
    margin_text = f"{margin}%" if relative else str(margin)
    if Decimal(str(value)) > Decimal(str(cv)) and Decimal(str(value)) >= need:
        return (
            True,
            "BeatChampion",
            f"{label} {value:.4f} beats champion v{champion.version} {where} {cv:.4f} by margin {margin_text} "
            f"and {base}",
        )
    return (
        False,
        "NotBetterThanChampion",
        f"{label} {value:.4f} does not beat champion v{champion.version} {where} {cv:.4f} by margin "
        f"{margin_text} (needs {float(need):.4f}); {base}",
    )

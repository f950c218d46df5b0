"""Training + evaluation time of every recops_training algorithm on a ~1M-interaction snapshot, side
by side with (a) the same algorithm written the straightforward way (dense similarity built with a
Python loop over items, evaluation with a Python loop over users) and (b) ``implicit``'s ALS as the
peer library, NDCG@10 of each in the same table.

Runs alternate A B A B (vectorised, straightforward, vectorised, ...) and medians are reported,
with the machine and package versions, to ``bench/results/training.json``.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/training/bench_training.py            # ~ a few minutes
    .venv/bin/python bench/training/bench_training.py --events 200000 --repeats 1       # quick look

Data: ``recops_training.synthetic.make_events`` (users with persistent category tastes, Zipf item
popularity, repeat purchases), 7-day temporal holdout, ``log1p`` weighting. The floor column is
the time the evaluation spends only scoring users (the matrix products, no ranking or metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]
for sub in ("training", "model-format"):
    sys.path.insert(0, str(ROOT / sub))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from recops_training.algorithms import FittedParts, build, score_parts  # noqa: E402
from recops_training.data import Snapshot, temporal_holdout  # noqa: E402
from recops_training.evaluation import Holdout, evaluate  # noqa: E402
from recops_training.synthetic import make_events  # noqa: E402

K = 10
ALGOS = {
    "popularity": {},
    "itemknn": {"neighbors": 100, "shrink": 10},
    "rp3beta": {"alpha": 1.0, "beta": 0.3, "neighbors": 100},
    "puresvd": {"factors": 64},
    "ease": {"l2": 200},
}


# ------------------------------------------------------------------------------------------------
# the straightforward versions
# ------------------------------------------------------------------------------------------------


def naive_fit(name: str, params: dict, X: sp.csr_matrix):
    """Returns a function user_row -> dense score vector."""
    n_items = X.shape[1]
    if name == "popularity":
        pop = np.zeros(n_items)
        _, cols = X.nonzero()
        for c in cols:  # count users per item, one interaction at a time
            pop[c] += 1
        pop /= X.shape[0]
        return lambda u: pop.copy()
    if name in ("itemknn", "rp3beta"):
        Xd = X
        if name == "itemknn":
            co = (Xd.T @ Xd).toarray()
            norms = np.sqrt(np.asarray(Xd.multiply(Xd).sum(axis=0)).ravel())
            S = co / (np.outer(norms, norms) + params["shrink"] + 1e-9)
        else:
            Xa = Xd.copy()
            Xa.data = Xa.data ** params["alpha"]
            Pui = Xa.multiply(1 / np.maximum(np.asarray(Xa.sum(axis=1)), 1e-12)).tocsr()
            Piu = Xa.T.multiply(1 / np.maximum(np.asarray(Xa.sum(axis=0)).T, 1e-12)).tocsr()
            S = (Piu @ Pui).toarray()
            deg = np.maximum(np.bincount(X.indices, minlength=n_items), 1)
            S = S / deg[None, :] ** params["beta"]
        np.fill_diagonal(S, 0)
        for i in range(n_items):  # keep the top-N neighbours of every item, one item at a time
            row = S[i]
            cut = np.argsort(-row)[params["neighbors"] :]
            row[cut] = 0
        return lambda u: np.asarray(X[u] @ S).ravel()
    if name == "puresvd":
        parts = build("puresvd", params).fit(X).parts  # the same sklearn call; scoring per user
        U, V = parts.user_factors, parts.item_factors
        return lambda u: U[u] @ V.T
    if name == "ease":
        G = (X.T @ X).toarray().astype(np.float64) + params["l2"] * np.eye(n_items)
        P = np.linalg.inv(G)
        B = -P / np.diag(P)
        np.fill_diagonal(B, 0)
        return lambda u: np.asarray(X[u] @ B).ravel()
    raise ValueError(name)


def naive_evaluate(score_user, h: Holdout, users: np.ndarray) -> dict[str, float]:
    """Per-user Python loop: score, mask, full argsort, metrics (both variants, k = 10)."""
    X = h.X_train
    out = {"ndcg": [], "recall": [], "ndcg_repeat": [], "recall_repeat": []}
    disc = 1 / np.log2(np.arange(2, K + 2))
    for u in users:
        s = np.array(score_user(u), dtype=np.float64)
        for variant, rel_m, n_rel in (("", h.test_new, h.n_rel_new), ("_repeat", h.test_all, h.n_rel_all)):
            if n_rel[u] == 0:
                continue
            s2 = s.copy()
            if not variant:
                s2[X.indices[X.indptr[u] : X.indptr[u + 1]]] = -np.inf
            top = np.argsort(-s2, kind="stable")[:K]
            rel = set(rel_m.indices[rel_m.indptr[u] : rel_m.indptr[u + 1]].tolist())
            hits = np.array([1.0 if i in rel else 0.0 for i in top])
            idcg = disc[: min(n_rel[u], K)].sum()
            out["ndcg" + variant].append(float((hits * disc).sum() / idcg))
            out["recall" + variant].append(float(hits.sum() / n_rel[u]))
    return {
        f"{m}_at_{K}" if "repeat" not in m else f"{m.split('_')[0]}_at_{K}_repeat": float(np.mean(v))
        for m, v in out.items()
    }


# ------------------------------------------------------------------------------------------------


def implicit_als(X: sp.csr_matrix, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=seed, num_threads=1)
    model.fit(X, show_progress=False)
    return FittedParts(
        kind="factors", user_factors=np.asarray(model.user_factors), item_factors=np.asarray(model.item_factors)
    )


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    info["versions"] = {}
    for pkg in ("numpy", "scipy", "scikit-learn", "pandas", "implicit", "pydantic"):
        try:
            info["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info["versions"][pkg] = None
    info["threads"] = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=4_000)
    ap.add_argument("--eval-users", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2, help="A B pairs per algorithm")
    ap.add_argument("--algorithms", default=",".join(ALGOS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "training.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    load_start = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    events, items = make_events(n_users=args.users, n_items=args.items, n_events=args.events, n_categories=40, seed=0)
    pairs = events.rename(columns={"ts": "first_ts"}).assign(last_ts=lambda f: f["first_ts"])
    snap = Snapshot(
        uri="synthetic", version="bench", digest="bench", manifest={}, pairs=pairs, granularity="events", items=items
    )
    h = temporal_holdout(snap, 7, "log1p")
    X = h.X_train
    users = np.flatnonzero(h.n_rel_all > 0)
    users = np.sort(np.random.default_rng(0).choice(users, size=min(args.eval_users, len(users)), replace=False))
    print(
        f"data: {len(events)} events -> train {X.shape[0]} users x {X.shape[1]} items, {X.nnz} pairs; "
        f"{len(users)} eval users; prepared in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    sub = Holdout(
        X_train=X,
        test_all=h.test_all,
        n_rel_all=np.where(np.isin(np.arange(X.shape[0]), users), h.n_rel_all, 0),
        test_new=h.test_new,
        n_rel_new=np.where(np.isin(np.arange(X.shape[0]), users), h.n_rel_new, 0),
        user_ids=h.user_ids,
        item_ids=h.item_ids,
        popularity=h.popularity,
    )

    rows = []
    for name in args.algorithms.split(","):
        params = ALGOS[name]
        runs: dict[str, list] = {"vectorised": [], "straightforward": []}
        for rep in range(args.repeats):
            for variant in ("vectorised", "straightforward"):  # A B A B
                t1 = time.perf_counter()
                if variant == "vectorised":
                    algo = build(name, params).fit(X)
                    t2 = time.perf_counter()
                    same = algo.popularity if name == "popularity" else None
                    m = evaluate(algo.score_batch, sub, ks=[K], same_for_all=same)
                    t3 = time.perf_counter()
                    # floor: only the scoring products of the same users, same batches
                    batch = max(1, 4_000_000 // X.shape[1])
                    for s in range(0, len(users), batch):
                        r = users[s : s + batch]
                        algo.score_batch(X[r], r)
                    floor = time.perf_counter() - t3
                    runs[variant].append((t2 - t1, t3 - t2, m[f"ndcg_at_{K}"], m[f"ndcg_at_{K}_repeat"], floor))
                else:
                    score_user = naive_fit(name, params, X)
                    t2 = time.perf_counter()
                    m = naive_evaluate(score_user, h, users)
                    t3 = time.perf_counter()
                    runs[variant].append((t2 - t1, t3 - t2, m[f"ndcg_at_{K}"], m[f"ndcg_at_{K}_repeat"], None))
                print(
                    f"  {name:10s} {variant:15s} rep {rep}: train {t2 - t1:7.2f}s eval {t3 - t2:7.2f}s "
                    f"ndcg@10 {runs[variant][-1][2]:.4f}",
                    flush=True,
                )
        for variant, rs in runs.items():
            row = {
                "algorithm": name,
                "implementation": variant,
                "params": params,
                "train_s": statistics.median(r[0] for r in rs),
                "eval_s": statistics.median(r[1] for r in rs),
                "ndcg_at_10": rs[-1][2],
                "ndcg_at_10_repeat": rs[-1][3],
                "runs": len(rs),
                "train_s_all": [round(r[0], 3) for r in rs],
                "eval_s_all": [round(r[1], 3) for r in rs],
            }
            if variant == "vectorised":
                row["eval_floor_s"] = statistics.median(r[4] for r in rs)
            rows.append(row)
        v = next(r for r in rows if r["algorithm"] == name and r["implementation"] == "vectorised")
        n = next(r for r in rows if r["algorithm"] == name and r["implementation"] == "straightforward")
        v["speedup_total_vs_straightforward"] = (n["train_s"] + n["eval_s"]) / max(v["train_s"] + v["eval_s"], 1e-9)
        v["speedup_eval_vs_straightforward"] = n["eval_s"] / max(v["eval_s"], 1e-9)
        v["eval_vs_floor"] = v["eval_s"] / max(v["eval_floor_s"], 1e-9)

    # the peer: implicit ALS (its fit), evaluated with the same vectorised evaluation
    try:
        als_runs = []
        for _ in range(args.repeats):
            t1 = time.perf_counter()
            parts = implicit_als(X, seed=0)
            t2 = time.perf_counter()
            m = evaluate(lambda Xb, r, p=parts: score_parts(p, h.popularity, Xb, r), sub, ks=[K])
            t3 = time.perf_counter()
            als_runs.append((t2 - t1, t3 - t2, m[f"ndcg_at_{K}"], m[f"ndcg_at_{K}_repeat"]))
            print(
                f"  {'als':10s} {'implicit':15s}: train {t2 - t1:7.2f}s eval {t3 - t2:7.2f}s "
                f"ndcg@10 {m[f'ndcg_at_{K}']:.4f}",
                flush=True,
            )
        rows.append(
            {
                "algorithm": "als",
                "implementation": "implicit (peer)",
                "params": {"factors": 64, "regularization": 0.05, "iterations": 15},
                "train_s": statistics.median(r[0] for r in als_runs),
                "eval_s": statistics.median(r[1] for r in als_runs),
                "ndcg_at_10": als_runs[-1][2],
                "ndcg_at_10_repeat": als_runs[-1][3],
                "runs": len(als_runs),
            }
        )
    except ImportError as exc:
        print(f"implicit not installed ({exc}): peer skipped", flush=True)

    als = next((r for r in rows if r["algorithm"] == "als"), None)
    if als is not None:
        for r in rows:
            if r["implementation"] == "vectorised":
                r["ndcg_vs_implicit_als"] = r["ndcg_at_10"] / max(als["ndcg_at_10"], 1e-12)
                r["train_speedup_vs_implicit_als"] = als["train_s"] / max(r["train_s"], 1e-9)
    pop = next(
        (r["ndcg_at_10"] for r in rows if r["algorithm"] == "popularity" and r["implementation"] == "vectorised"), None
    )
    print()
    print(
        f"{'algorithm':10s} {'implementation':16s} {'train s':>8s} {'eval s':>8s} {'floor s':>8s} {'NDCG@10':>8s} "
        f"{'rep.':>7s} {'vs pop':>7s} {'speedup':>8s} {'eval/floor':>10s} {'NDCG/ALS':>9s} {'train ALS/x':>11s}"
    )
    for r in rows:
        lift = f"{r['ndcg_at_10'] / pop:6.2f}x" if pop else "   -"
        sp_ = f"{r['speedup_total_vs_straightforward']:7.1f}x" if "speedup_total_vs_straightforward" in r else "       "
        fl = f"{r['eval_floor_s']:8.2f}" if "eval_floor_s" in r else "       -"
        print(
            f"{r['algorithm']:10s} {r['implementation']:16s} {r['train_s']:8.2f} {r['eval_s']:8.2f} {fl} "
            f"{r['ndcg_at_10']:8.4f} "
            f"{r['ndcg_at_10_repeat']:7.4f} {lift} {sp_} "
            + (f"{r['eval_vs_floor']:9.1f}x" if "eval_vs_floor" in r else " " * 10)
            + (f" {r['ndcg_vs_implicit_als']:8.2f}x" if "ndcg_vs_implicit_als" in r else " " * 9)
            + (f" {r['train_speedup_vs_implicit_als']:10.2f}x" if "train_speedup_vs_implicit_als" in r else "")
        )
    result = {
        "benchmark": "training",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "data": {
            "events": len(events),
            "train_users": int(X.shape[0]),
            "train_items": int(X.shape[1]),
            "train_pairs": int(X.nnz),
            "eval_users": len(users),
            "holdout_days": 7,
            "generator": "recops_training.synthetic.make_events(seed=0)",
        },
        "k": K,
        "method": f"medians over {args.repeats} A/B pairs per algorithm (vectorised, straightforward alternating); "
        "eval_floor_s = scoring products only",
        "rows": rows,
        "total_seconds": time.perf_counter() - t0,
    }
    result["machine"]["loadavg_start"] = load_start
    result["machine"]["loadavg_end"] = (
        Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(args.out)
    print(f"\nwrote {args.out} ({result['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()

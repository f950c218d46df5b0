"""HTTP throughput and tail latency of the Recops model server, side by side with its peer and floor.

Targets (all on the same uvicorn stack -- uvloop + httptools, access log off, no server header -- each
pinned with ``taskset`` to core 0; ``wrk`` with a Lua script for random users on core 1):
- ``recops``: ``python -m recops_server.cli`` serving a factors model (GET /v1/recommendations/u{random}?k=10)
  with its defaults: Prometheus metrics, input validation, and payload logging ON (10% sampled, the
  operator's default, written to a local directory off the request path). The hot route is answered from
  uvicorn's httptools protocol (recops_server/rawpath.py: no ASGI task, one socket write per answer);
  ``const`` keeps plain ASGI, so it is the floor of ASGI serving on this stack, not of our protocol path
- ``mlflow``: ``mlflow models serve --env-manager local`` serving the *same* model through our pyfunc
  (POST /invocations with one user, params k=10) -- what a user of MLflow's own serving gets
- ``const``: a bare ASGI app answering a constant top-10 body (the floor of the HTTP stack)

Catalogues of 10k and 100k items (64 factors, 10k users), 16 connections. Rounds alternate A B C A B C
... and the median of the rounds is reported, with ratios (of the medians, and the median of the
per-round ratios), the machine, its load average, and package versions. Each run also records the
server's CPU seconds (its whole process tree, from /proc): requests per server CPU second is the
steadier figure when other work shares core 0; the recops runs also record the mean micro-batch size
(from the server's ``recops_scoring_batch_size`` histogram). A kernel section measures in-process ``recommend()``
(one user) and ``recommend_batch`` (16 users, per user) against pure reads of the float32 item-factor matrix
and of the int8 copy the server scores from (the memory floors), interleaved, for the HTTP catalogues and for
``--kernel-items`` (100k and 1M items).

One command re-runs everything (about 4 minutes; run it on a quiet machine, nothing else on the cores)::

    .venv/bin/python bench/server/bench_server.py
    .venv/bin/python bench/server/bench_server.py --rounds 1 --duration 3 --items 10000 --kernel-items   # quick look

Needs Debian's ``wrk`` (``apt-get install -y wrk``) and ``taskset``.

Result: ``bench/results/server.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import httpx
import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "model-format"), str(REPO / "model-server")]

from recops_model import RecModel, _quant, load_model, recommend, recommend_batch, save_model  # noqa: E402
from recops_model._scoring import _score_block  # noqa: E402

PYTHONPATH = os.pathsep.join([str(REPO / "model-format"), str(REPO / "model-server"), str(Path(__file__).parent)])


def random_history(rng: np.random.Generator, n_users: int, n_items: int, per_user: int) -> sp.csr_matrix:
    """``per_user`` random items per user (sp.random would allocate a permutation of n_users*n_items)."""
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.integers(0, n_items, size=rows.shape[0])
    m = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def make_model(n_users: int, n_items: int, f: int = 64, seed: int = 0) -> RecModel:
    rng = np.random.default_rng(seed)
    return RecModel(
        algorithm="puresvd",
        kind="factors",
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        seen=random_history(rng, n_users, n_items, 20),
        popularity=rng.random(n_items).astype(np.float32),
        item_categories=np.array([f"c{i % 50}" for i in range(n_items)]),
        user_factors=rng.standard_normal((n_users, f)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, f)).astype(np.float32),
        meta={"bench": True},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def start(name: str, cmd: list[str], env: dict[str, str], ready: str, logdir: Path) -> subprocess.Popen[bytes]:
    log = open(logdir / f"{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    wait(ready, proc)
    return proc


LUA_GET = """
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/recommendations/u" .. math.random(0, %d) .. "?k=10")
end
"""
LUA_POST = """
math.randomseed(42)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"dataframe_records": [{"user_id": "u' .. math.random(0, %d) .. '"}], "params": {"k": 10}}'
  return wrk.format("POST", "/invocations", nil, body)
end
"""


def parse_wrk(out: str) -> dict[str, float]:
    def dur(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        assert m, v
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = dur(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = dur(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (mlflow serves from a child)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def run_wrk(url: str, script: Path, duration: int, connections: int, pid: int | None = None) -> dict[str, Any]:
    """One wrk run; with ``pid``, also the server's CPU seconds, and requests per server CPU second
    (steadier than requests per second when other work shares the server's core)."""
    cpu0 = tree_cpu_seconds(pid) if pid else 0.0
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
    res: dict[str, Any] = parse_wrk(proc.stdout)
    if pid:
        res["server_cpu_s"] = round(tree_cpu_seconds(pid) - cpu0, 2)
        res["requests_per_cpu_s"] = round(res["requests"] / res["server_cpu_s"], 1) if res["server_cpu_s"] else 0.0
    if res["rps"] == 0 or os.environ.get("BENCH_DEBUG"):
        print(proc.stdout, proc.stderr, file=sys.stderr)
    return res


def batch_sizes(url: str) -> tuple[float, float]:
    """(sum, count) of the server's ``recops_scoring_batch_size`` histogram: requests per micro-batch."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = dict(re.findall(r"^recops_scoring_batch_size_(sum|count) (\S+)$", text, re.M))
    return float(found.get("sum", 0)), float(found.get("count", 0))


def kernel(model: RecModel, reps: int = 300, rounds: int = 7) -> dict[str, float]:
    """Per-request scoring time in-process vs the memory floors of reading the item factors once.

    Two floors: reading the float32 item factors (what exhaustive float32 scoring must read), and reading
    the int8 copy the server scores from (``recops_model._quant``: a quarter of the bytes; the float32
    rows of a few candidates a user are read besides). The loops run interleaved, round after round, and
    each ratio is the median of the per-round ratios (a shared core's noise hits both sides alike). Also:
    one user's cost inside a micro-batch of 16 (``recommend_batch``, what the server does under load), and
    the float32 product alone (``gemv``: what every request cost before the int8 pass), and the kernel call
    alone for one user (``topk``: ``QuantIndex.topk``, without ``recommend``'s Python around it)."""
    assert model.item_factors is not None and model.user_factors is not None
    v = model.item_factors
    users = [f"u{i}" for i in range(reps)]
    for u in users[:20]:
        recommend(model, u, 10)
    index = _quant.index_for(model)
    flat = np.ascontiguousarray(v).ravel()
    # np.max over bytes: one SIMD pass (the float32 floor reads with np.dot, which runs as fast)
    int8 = index.items.ravel() if index is not None else np.zeros(1, np.uint8)
    batch = max(1, reps // 16)
    rows = np.array([model.user_index[u] for u in users], dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    loops: dict[str, tuple[int, Any]] = {
        "recommend": (reps, lambda i: recommend(model, users[i], 10)),
        # the C kernel call alone for one user (int8 pass, candidates, float32 rescoring; no Python around it)
        "topk": (reps, lambda i: index.topk(rows[i : i + 1], 10, seen=True, exclude=none, category=None, outside=None))
        if index is not None
        else (1, lambda i: None),
        "gemv": (reps, lambda i: _score_block(model, np.array([model.user_index[users[i]]]))),  # float32 product
        "read": (reps, lambda i: np.dot(flat, flat)),  # one SIMD pass over the float32 matrix
        "read_int8": (reps, lambda i: int8.max()),  # one SIMD pass over the int8 copy
        "batch16": (batch, lambda i: recommend_batch(model, users[16 * i : 16 * i + 16], 10)),
    }
    us: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, (n, fn) in loops.items():
            t = time.perf_counter()
            for i in range(n):
                fn(i)
            us[name].append((time.perf_counter() - t) / n * 1e6 / (16 if name == "batch16" else 1))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(us[a], us[b], strict=True))

    return {
        "int8_index": float(index is not None),
        "recommend_us": statistics.median(us["recommend"]),
        "topk_us": statistics.median(us["topk"]),
        "gemv_us": statistics.median(us["gemv"]),
        "read_item_factors_us": statistics.median(us["read"]),
        "read_int8_us": statistics.median(us["read_int8"]),
        "batch16_per_user_us": statistics.median(us["batch16"]),
        "item_factors_mb": v.nbytes / 1e6,
        "int8_mb": int8.nbytes / 1e6,
        "recommend_over_read": ratio("recommend", "read"),
        "recommend_over_read_int8": ratio("recommend", "read_int8"),
        "topk_over_read_int8": ratio("topk", "read_int8"),
        "recommend_over_gemv": ratio("recommend", "gemv"),
        "batch16_per_user_over_read": ratio("batch16", "read"),
        "batch16_per_user_over_read_int8": ratio("batch16", "read_int8"),
    }


def compare(runs: dict[str, list[dict[str, Any]]], summary: dict[str, Any]) -> dict[str, float]:
    """recops against each peer: ratios of the medians, and medians of the per-round ratios (the runs of
    one round are back to back, so they share the machine's noise best)."""
    out: dict[str, float] = {}

    def per_round(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True) if y[key])

    for peer, label in (("mlflow", "mlflow"), ("const", "const_floor")):
        if "recops" not in summary or peer not in summary:
            continue
        out[f"recops_rps_over_{label}"] = summary["recops"]["rps_median"] / summary[peer]["rps_median"]
        out[f"recops_rps_over_{label}_per_round"] = per_round("recops", peer, "rps")
        out[f"recops_requests_per_cpu_s_over_{label}_per_round"] = per_round("recops", peer, "requests_per_cpu_s")
        if peer == "mlflow":
            out["mlflow_p99_over_recops"] = summary["mlflow"]["p99_ms_median"] / summary["recops"]["p99_ms_median"]
            out["mlflow_p99_over_recops_per_round"] = per_round("mlflow", "recops", "p99_ms")
        else:
            out["recops_p99_over_const_floor"] = summary["recops"]["p99_ms_median"] / summary["const"]["p99_ms_median"]
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "fastapi", "starlette", "uvicorn", "mlflow", "uvloop", "httptools", "orjson"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "absent"
    out["uvicorn_stack"] = (
        "uvloop+httptools" if out["uvloop"] != "absent" and out["httptools"] != "absent" else "asyncio+h11"
    )
    out["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),  # above ~0.2, other work shared the cores: compare ratios only
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--targets", nargs="*", default=["recops", "mlflow", "const"])
    ap.add_argument("--kernel-items", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--payload-percent", type=int, default=10, help="recops payload logging sample percent")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "server.json"))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    results: dict[str, Any] = {
        "benchmark": "model server HTTP top-10",
        "machine": machine(),
        "versions": versions(),
        "setup": {
            "server_core": 0,
            "wrk_core": 1,
            "wrk": f"-t1 -c{args.connections} -d{args.duration}s",
            "rounds": args.rounds,
            "users": args.users,
            "factors": 64,
            "order": "A B C per round, medians over rounds",
            "recops": f"metrics on, validation on, payload logging {args.payload_percent}% to a local dir",
        },
        "catalogues": {},
    }
    for n_items in args.items:
        print(f"== {n_items} items", flush=True)
        with tempfile.TemporaryDirectory(prefix="recops-bench-") as tmp_s:
            tmp = Path(tmp_s)
            model = make_model(args.users, n_items)
            save_model(model, tmp / "recops")
            get_lua = tmp / "get.lua"
            get_lua.write_text(LUA_GET % (args.users - 1))
            post_lua = tmp / "post.lua"
            post_lua.write_text(LUA_POST % (args.users - 1))
            procs: dict[str, subprocess.Popen[bytes]] = {}
            urls: dict[str, tuple[str, Path]] = {}
            try:
                # `mlflow models serve` execs `uvicorn` from PATH: the venv's bin first
                path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
                env = {"PYTHONPATH": PYTHONPATH, "OPENBLAS_NUM_THREADS": "1", "PATH": path}
                if "recops" in args.targets:
                    p = free_port()
                    procs["recops"] = start(
                        "recops",
                        [sys.executable, "-m", "recops_server.cli", "--port", str(p), "--host", "127.0.0.1"],
                        {**env, "RECOPS_MODEL_URI": str(tmp / "recops"), "RECOPS_RELOAD_INTERVAL_SECONDS": "0",
                         "RECOPS_MAX_CONCURRENCY": "1024", "RECOPS_PAYLOAD_LOG_DIR": str(tmp / "payloads"),
                         "RECOPS_PAYLOAD_SAMPLE_PERCENT": str(args.payload_percent)},
                        f"http://127.0.0.1:{p}/readyz",
                        tmp,
                    )  # fmt: skip
                    urls["recops"] = (f"http://127.0.0.1:{p}", get_lua)
                if "recops-inline" in args.targets:
                    p = free_port()
                    procs["recops-inline"] = start(
                        "recops-inline",
                        [sys.executable, "-m", "recops_server.cli", "--port", str(p), "--host", "127.0.0.1"],
                        {**env, "RECOPS_MODEL_URI": str(tmp / "recops"), "RECOPS_RELOAD_INTERVAL_SECONDS": "0",
                         "RECOPS_MAX_CONCURRENCY": "1024", "RECOPS_SCORING_IN_THREADPOOL": "false"},
                        f"http://127.0.0.1:{p}/readyz",
                        tmp,
                    )  # fmt: skip
                    urls["recops-inline"] = (f"http://127.0.0.1:{p}", get_lua)
                if "mlflow" in args.targets:
                    from recops_model.pyfunc import save_pyfunc_model

                    save_pyfunc_model(model, tmp / "mlflow_model")
                    p = free_port()
                    procs["mlflow"] = start(
                        "mlflow",
                        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(tmp / "mlflow_model"),
                         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p), "--workers", "1"],
                        env,
                        f"http://127.0.0.1:{p}/ping",
                        tmp,
                    )  # fmt: skip
                    urls["mlflow"] = (f"http://127.0.0.1:{p}", post_lua)
                if "const" in args.targets:
                    p = free_port()
                    procs["const"] = start(
                        "const",
                        [sys.executable, "-m", "uvicorn", "const_app:app", "--port", str(p), "--host", "127.0.0.1",
                         "--no-access-log", "--no-server-header", "--log-level", "warning"],
                        env,
                        f"http://127.0.0.1:{p}/",
                        tmp,
                    )  # fmt: skip
                    urls["const"] = (f"http://127.0.0.1:{p}", get_lua)
                # sanity: each target answers a real top-10
                for name, (url, _) in urls.items():
                    if name == "mlflow":
                        r = httpx.post(f"{url}/invocations", json={"dataframe_records": [{"user_id": "u1"}],
                                                                    "params": {"k": 10}}, timeout=30)  # fmt: skip
                        assert r.status_code == 200 and len(r.json()["predictions"][0]["item_ids"]) == 10, r.text
                    else:
                        r = httpx.get(f"{url}/v1/recommendations/u1?k=10", timeout=30)
                        assert r.status_code == 200 and len(r.json()["items"]) == 10, r.text
                for url, script in urls.values():  # warm-up
                    run_wrk(url, script, 2, args.connections)
                runs: dict[str, list[dict[str, float]]] = {n: [] for n in urls}
                for rnd in range(args.rounds):
                    for name, (url, script) in urls.items():
                        before = batch_sizes(url) if name.startswith("recops") else None
                        res = run_wrk(url, script, args.duration, args.connections, procs[name].pid)
                        if before is not None:
                            after = batch_sizes(url)
                            res["mean_batch_size"] = round((after[0] - before[0]) / max(1.0, after[1] - before[1]), 2)
                        runs[name].append(res)
                        print(f"  round {rnd + 1} {name:14s} {res['rps']:9.1f} rps  p99 {res['p99_ms']:8.2f} ms"
                              f"  non2xx {res['non_2xx']}  {res['requests_per_cpu_s']:9.1f} req/cpu-s"
                              + (f"  batch {res['mean_batch_size']}" if "mean_batch_size" in res else ""),
                              flush=True)  # fmt: skip
            finally:
                for proc in procs.values():
                    proc.terminate()
                for proc in procs.values():
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            summary: dict[str, Any] = {}
            for name, rs in runs.items():
                summary[name] = {
                    "rps_median": statistics.median(r["rps"] for r in rs),
                    "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
                    "p99_ms_median": statistics.median(r["p99_ms"] for r in rs),
                    "requests_per_cpu_s_median": statistics.median(r["requests_per_cpu_s"] for r in rs),
                    "non_2xx_total": sum(int(r["non_2xx"]) for r in rs),
                    "runs": rs,
                }
            ratios = compare(runs, summary)
            # the kernel as the server runs it: the loaded model (row-major item factors), core 0
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {0})
            k = kernel(load_model(tmp / "recops"))
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            results["catalogues"][str(n_items)] = {"targets": summary, "ratios": ratios, "kernel": k}
            print(f"  ratios {json.dumps({a: round(b, 3) for a, b in ratios.items()})}", flush=True)
            print(f"  kernel {json.dumps({a: round(b, 2) for a, b in k.items()})}", flush=True)
    results["kernel"] = {}
    for n_items in args.kernel_items:
        with tempfile.TemporaryDirectory(prefix="recops-bench-") as tmp_s:
            save_model(make_model(args.users, n_items), Path(tmp_s) / "recops")
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {0})
            k = kernel(load_model(Path(tmp_s) / "recops"), reps=300 if n_items <= 100_000 else 30)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        results["kernel"][str(n_items)] = k
        print(f"== kernel {n_items} items {json.dumps({a: round(b, 2) for a, b in k.items()})}", flush=True)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark of the Recops operator on the lab's real control plane (kwok fake nodes).

For each size N (default 1000 and 5000 RecommenderDeployments, plus N/10 FeaturePipelines and N/10
DriftMonitors, all `backend: kubernetes`), in one run and side by side:

  floor     the operator is not running. A bare asyncio client (aiohttp, 64 requests in flight) creates the
            same objects, then does the writes a reconcile cannot avoid at its maximum rate: add the finalizer,
            server-side apply every child (the bodies come from the same pure `controllers.*.build_children`)
            and write the status (from the same `decide`). That time is the floor convergence is compared to.
            "client floor": the same writes through the operator's own edge (`recops.kube.apply` and the
            Kubernetes client) on 8 threads, the operator's pool size: what the synchronous client alone costs.
  baseline  `recops operator` with RECOPS_TUNING=off: kopf's defaults plus what `main.configure` sets.
  tuned     `recops operator` with `recops.tuning` applied (RECOPS_TUNING=on, the default).

Each operator run (its own namespace; the operator is a subprocess started here, request meter included,
see counted_operator.py) measures:
  converge  from the first create until every object has status.observedGeneration == metadata.generation
            (children applied + status written: with `replicas: 0` no pod is needed, so Ready stays Unknown
            "Pending": the pods of 5,000 Deployments would swamp the 2-core control plane; `--replicas 1`
            runs pods on kwok, which then must have room for them)
  latency   patch spec.serving.defaultK of a sample of RecommenderDeployments one at a time; a watch on the
            Deployments sees the child's env change: reaction = seen - patch sent (median, p99)
  steady    a quiet window after convergence: operator CPU and API requests per second of the resync
  restart   SIGTERM, start again: time until every object was reconciled once more (resume), peak memory
  delete    delete every custom object; time until the operator removed its finalizers and they are gone,
            then the namespace (children are garbage collected) and the time that took
Operator CPU seconds and peak RSS (VmHWM) come from /proc via psutil; API requests are counted in the
operator's process (both HTTP stacks) and cross-checked with the API server's apiserver_request_total.
Where the memory goes: `kill -USR2 <operator pid>` (counted_operator.py) appends object counts by type, asyncio
tasks by coroutine, kopf's per-object memories and kept bodies (managedFields share) and glibc's heap to
WORKDIR/<config>-counts-<n>.mem.txt, and pymalloc's arenas to the operator's log; it costs nothing until asked.

Results: bench/results/scale.json and .md by default (--out PATH.json for another file, e.g. the 5,000 record
bench/results/scale-5000-in-tree.json). Run it under the lab lock:
    flock /tmp/recops-lab.lock .venv/bin/python bench/scale/bench_scale.py --sizes 1000
or on a private control plane that no one else uses (its own state dir; the k8s components take free ports):
    RECOPS_LAB_DIR=/tmp/recops-bench-lab .venv/bin/python bench/scale/bench_scale.py --sizes 5000 \
        --out bench/results/scale-5000-in-tree.json
    RECOPS_LAB_DIR=/tmp/recops-bench-lab .venv/bin/recops lab down   # afterwards (--keep-lab keeps it up)
In the tree since 2026-11-29, each measured first from a scratch copy: the resync timer's initial delay and own
threads and the lazy scipy import in recops_drift (morning); then (afternoon, for 5,000 objects under 250 MB)
one resync scheduler instead of a kopf timer per object (`tuning.Resyncs`, main.py), managedFields dropped
before kopf keeps a body, kopf's per-object workers limited (RECOPS_OBJECT_WORKERS) and two malloc arenas. A
change still outside the tree (proposed-events.patch, not applied) is measured from a scratch copy:
    bench/scale/make_scratch.sh /tmp/recops-scratch bench/scale/proposed-events.patch
    # then --pythonpath tuned:/tmp/recops-scratch
Options: --sizes 1000,5000 --configs baseline,tuned --rounds 1 --latency-samples 200 --steady 60
         --env tuned:RECOPS_WORKERS=16 (extra environment per config) --pythonpath tuned:/tmp/scratch/operator
         --no-restart --no-floor (neither floor) --no-client-floor --replicas 0 --keep-lab --workdir DIR
         --out PATH.json --note TEXT (repeatable) --render (no run: add --note to --out and rewrite its .md)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PROM_CRDS = ROOT.parent / "shared" / "third_party" / "prometheus-operator-crds"
COUNTED_OPERATOR = Path(__file__).with_name("counted_operator.py")
BENCH_LABEL = "recops.dev/bench"
SERVICE_CIDR_NAME = "recops-bench-scale"
SERVICE_CIDR = "10.96.0.0/17"  # the lab's own Service range is a /24: 254 Services at most
GROUP_VERSION = "recops.dev/v1alpha1"
PLURALS = {
    "RecommenderDeployment": "recommenderdeployments", "FeaturePipeline": "featurepipelines",
    "DriftMonitor": "driftmonitors", "TrainingRun": "trainingruns", "Deployment": "deployments",
    "Service": "services", "ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules",
    "CronJob": "cronjobs", "ConfigMap": "configmaps", "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Namespace": "namespaces",
    "ServiceCIDR": "servicecidrs", "Job": "jobs",
}
CR_KINDS = ("RecommenderDeployment", "FeaturePipeline", "DriftMonitor")
CONFIGS: dict[str, dict[str, str]] = {
    "baseline": {"RECOPS_TUNING": "off"},
    "tuned": {"RECOPS_TUNING": "on"},
}
CONCURRENCY = 64


def log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def path_for(api_version: str, kind: str, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURALS[kind]}"
    return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the API client ----------------------------------------------------------------------------------------------


class Api:
    """A small asyncio client with the lab's admin certificate (64 requests in flight at most)."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path, limit: int = CONCURRENCY) -> None:
        self.server = server.rstrip("/")
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        self.sem = asyncio.Semaphore(limit)

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None, *, ctype: str = "application/json",
                   params: dict[str, str] | None = None, ok: Iterable[int] = (200, 201, 202)) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": ctype} if data is not None else {}
        for attempt in range(8):
            async with self.sem:
                try:
                    async with self.session.request(method, self.server + path, data=data, headers=headers,
                                                    params=params) as resp:
                        text = await resp.text()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if attempt == 7:
                        raise
                    log(f"retrying {method} {path}: {exc!r}")
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
            if status in (429, 500, 503, 504) and attempt < 7:
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            parsed = json.loads(text) if text and text[0] in "{[" else text
            if status not in ok:
                raise RuntimeError(f"{method} {path} -> {status}: {str(parsed)[:400]}")
            return status, parsed
        raise RuntimeError("unreachable")

    async def apply(self, obj: dict[str, Any], manager: str = "recops-bench") -> Any:
        meta = obj["metadata"]
        path = path_for(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return (await self.call("PATCH", path, obj, ctype="application/apply-patch+yaml",
                                params={"fieldManager": manager, "force": "true"}))[1]

    async def text(self, path: str) -> str:
        async with self.sem, self.session.get(self.server + path) as resp:
            return await resp.text()

    async def watch(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[tuple[str, Any]]:
        """LIST then WATCH from its resourceVersion; yields ("LIST", obj) for the initial items, then events."""
        _, listed = await self.call("GET", path, params=params)
        for item in listed.get("items") or []:
            yield "LIST", item
        rv = listed["metadata"]["resourceVersion"]
        while True:
            query = {**(params or {}), "watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                     "timeoutSeconds": "3600"}
            try:
                async with self.session.get(self.server + path, params=query) as resp:
                    if resp.status == 410:
                        raise RuntimeError(f"watch {path}: resourceVersion {rv} expired")
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch {path}: {obj}")
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            yield event["type"], obj
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                log(f"re-watching {path}: {exc!r}")


# -- the objects ---------------------------------------------------------------------------------------------------


def rd_manifest(ns: str, name: str, replicas: int) -> dict[str, Any]:
    # A pinned model version: the operator resolves no alias, so no MLflow call (the URI is a closed port,
    # so an unexpected call would show as MLflowUnavailable in the status and fail the run).
    spec = {"backend": "kubernetes", "model": {"name": "shop-recommender", "version": "1",
                                               "trackingUri": "http://127.0.0.1:9"},
            "replicas": replicas, "serving": {"defaultK": 10}}
    return {"apiVersion": GROUP_VERSION, "kind": "RecommenderDeployment",
            "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "scale"}}, "spec": spec}


def fp_manifest(ns: str, name: str) -> dict[str, Any]:
    spec = {"backend": "kubernetes", "schedule": "0 3 * * *", "suspend": True,
            "sources": {"clickstream": {"uri": "s3://bench-clickstream/events"}},
            "output": {"uri": "s3://bench-features/snapshots"}}
    return {"apiVersion": GROUP_VERSION, "kind": "FeaturePipeline",
            "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "scale"}}, "spec": spec}


def dm_manifest(ns: str, name: str, target: str) -> dict[str, Any]:
    spec = {"backend": "kubernetes", "target": {"deploymentRef": {"name": target}}}
    return {"apiVersion": GROUP_VERSION, "kind": "DriftMonitor",
            "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "scale"}}, "spec": spec}


def manifests(ns: str, n: int, replicas: int) -> list[dict[str, Any]]:
    mix = max(1, n // 10)
    objs = [rd_manifest(ns, f"rd-{i:05d}", replicas) for i in range(n)]
    objs += [fp_manifest(ns, f"fp-{i:05d}") for i in range(mix)]
    objs += [dm_manifest(ns, f"dm-{i:05d}", f"rd-{i:05d}") for i in range(mix)]
    # Refuse a manifest the operator would call invalid: the benchmark measures reconciles, not InvalidSpec.
    from recops.api.driftmonitor import DriftMonitorSpec
    from recops.api.featurepipeline import FeaturePipelineSpec
    from recops.api.recommenderdeployment import RecommenderDeploymentSpec

    models = {"RecommenderDeployment": RecommenderDeploymentSpec, "FeaturePipeline": FeaturePipelineSpec,
              "DriftMonitor": DriftMonitorSpec}
    for kind in CR_KINDS:
        first = next(o for o in objs if o["kind"] == kind)
        models[kind].model_validate(first["spec"])
    return objs


def essential_writes(body: dict[str, Any], monitoring_crds: bool) -> list[tuple[str, str, Any, str]]:
    """The writes one reconcile cannot avoid for a new object: finalizer, children (apply), status.

    Built with the operator's own pure functions, so the bodies are the ones the operator sends.
    """
    from recops.api import FINALIZER
    from recops.api.driftmonitor import DriftMonitorSpec
    from recops.api.featurepipeline import FeaturePipelineSpec
    from recops.api.recommenderdeployment import RecommenderDeploymentSpec
    from recops.conditions import Verdict, apply_verdicts, now_rfc3339
    from recops.controllers import driftmonitor as dm
    from recops.controllers import featurepipeline as fp
    from recops.controllers import recommenderdeployment as rd
    from recops.controllers.common import Owner
    from recops.reconcile import _pin_version

    kind, meta = body["kind"], body["metadata"]
    owner = Owner.from_body(kind, body)
    ok = Verdict.ok("Available", "ok")
    if kind == "RecommenderDeployment":
        spec = RecommenderDeploymentSpec.model_validate(body["spec"])
        children = rd.build_children(spec, owner, monitoring_crds=monitoring_crds)
        _pin_version(children[0], "1")
        verdicts, fields = rd.decide(rd.Observed(
            backend=ok, references=ok, desired_replicas=spec.replicas, replicas=0, ready_replicas=0,
            updated_replicas=0, served_version=None, model_loaded=Verdict.unknown("Pending", "no replica yet"),
            url=f"http://{owner.name}.{owner.namespace}.svc", selector="app=x"))
        fields["desiredVersion"] = "1"
    elif kind == "FeaturePipeline":
        fspec = FeaturePipelineSpec.model_validate(body["spec"])
        children = fp.build_children(fspec, owner)
        verdicts, fields = fp.decide(fp.Observed(backend=ok, references=ok, children_ready=True))
    else:
        dspec = DriftMonitorSpec.model_validate(body["spec"])
        children = dm.build_children(dspec, owner, monitoring_crds=monitoring_crds)
        verdicts, fields = dm.decide(dm.Observed(backend=ok, references=ok,
                                                 waiting=Verdict.unknown("WaitingForReference", "waiting")))
    gen = int(meta.get("generation", 1))
    status = {**fields, "observedGeneration": gen, "conditions": apply_verdicts(None, verdicts, gen, now_rfc3339())}
    own = path_for(GROUP_VERSION, kind, meta["namespace"], meta["name"])
    writes = [("PATCH", own, {"metadata": {"finalizers": [FINALIZER]}}, "application/merge-patch+json")]
    for child in children:
        cm = child["metadata"]
        writes.append(("APPLY", path_for(child["apiVersion"], child["kind"], cm["namespace"], cm["name"]), child, ""))
    writes.append(("PATCH", own + "/status", {"status": status}, "application/merge-patch+json"))
    return writes


# -- the operator under test -------------------------------------------------------------------------------------


@dataclass
class Operator:
    name: str
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0
    counts_file: Path = field(default_factory=Path)
    log_file: Path = field(default_factory=Path)
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.health_port, self.metrics_port = free_port(), free_port()
        self.counts_file = self.workdir / f"{self.name}-counts-{self.starts}.json"
        self.log_file = self.workdir / f"{self.name}-operator-{self.starts}.log"
        env = {**self.env, "RECOPS_METRICS_PORT": str(self.metrics_port), "RECOPS_BENCH_COUNTS": str(self.counts_file)}
        out = open(self.log_file, "wb")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([sys.executable, str(COUNTED_OPERATOR), "--health-port", str(self.health_port)],
                                     env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=str(ROOT))
        out.close()

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"the operator exited; log: {self.log_file}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{self.health_port}/healthz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the operator was not healthy within {timeout}s; log: {self.log_file}")

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's own record of the process's peak resident memory."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def counts(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.counts_file.read_text())["counts"])
        except (OSError, ValueError, KeyError):
            return {}

    async def reconciles(self) -> int:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp:
            text = await resp.text()
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("recops_reconciles_total{")))

    def stop(self) -> float:
        """SIGTERM (then SIGKILL after 30 s) to the operator's own process group; returns seconds to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return time.monotonic() - started


# -- measuring -----------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    t: float
    op_cpu: float
    op_rss_mb: float
    counts: dict[str, int]
    reconciles: int
    apiserver: dict[str, float]
    plane_cpu: dict[str, float]


def plane_processes(lab_state: dict[str, Any]) -> dict[str, psutil.Process]:
    out = {}
    for name in ("kube-apiserver", "etcd", "kube-controller-manager"):
        pid = (lab_state.get("components", {}).get(name) or {}).get("pid")
        with contextlib.suppress(psutil.Error, TypeError):
            out[name] = psutil.Process(int(pid))
    return out


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def parse_apiserver_requests(text: str) -> dict[str, float]:
    """apiserver_request_total summed by `VERB resource[/subresource]`."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
        out[f"{labels.get('verb')} {labels.get('resource')}{sub}"] += float(value)
    return dict(out)


class Meter:
    def __init__(self, api: Api, op: Operator, plane: dict[str, psutil.Process]) -> None:
        self.api, self.op, self.plane = api, op, plane
        self.rss_samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def snapshot(self) -> Snapshot:
        proc = self.op.process()
        text = await self.api.text("/metrics")
        return Snapshot(t=time.monotonic(), op_cpu=cpu_seconds(proc), op_rss_mb=proc.memory_info().rss / 2**20,
                        counts=self.op.counts(), reconciles=await self.op.reconciles(),
                        apiserver=parse_apiserver_requests(text),
                        plane_cpu={k: cpu_seconds(p) for k, p in self.plane.items()})

    def start_sampling(self) -> None:
        async def sample() -> None:
            proc = self.op.process()
            while True:
                with contextlib.suppress(psutil.Error):
                    self.rss_samples.append((time.monotonic(), proc.memory_info().rss / 2**20))
                await asyncio.sleep(1.0)

        self._task = asyncio.ensure_future(sample())

    def stop_sampling(self) -> None:
        if self._task:
            self._task.cancel()


def phase(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """What happened between two snapshots."""
    wall = b.t - a.t
    counts = {k: b.counts.get(k, 0) - a.counts.get(k, 0) for k in b.counts}
    counts = {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}
    requests = sum(v for k, v in counts.items() if not k.endswith("new-connection"))
    writes = sum(v for k, v in counts.items() if k.split(" ")[1] in ("PATCH", "POST", "PUT", "DELETE"))
    reconciles = b.reconciles - a.reconciles
    server = {k: b.apiserver.get(k, 0) - a.apiserver.get(k, 0) for k in b.apiserver}
    op_cpu = b.op_cpu - a.op_cpu
    return {
        "seconds": round(wall, 3),
        "operator_cpu_seconds": round(op_cpu, 2),
        "operator_cpu_percent": round(100 * op_cpu / wall, 1) if wall > 0 else None,
        "operator_rss_mb_end": round(b.op_rss_mb, 1),
        "reconciles": reconciles,
        "requests": requests,
        "writes": writes,
        "requests_per_second": round(requests / wall, 1) if wall > 0 else None,
        "requests_per_reconcile": round(requests / reconciles, 2) if reconciles else None,
        "new_connections": sum(v for k, v in counts.items() if k.endswith("new-connection")),
        "requests_by_kind": counts,
        "apiserver_apply_total": int(sum(v for k, v in server.items() if k.startswith("APPLY "))),
        "apiserver_requests_total": int(sum(server.values())),
        "control_plane_cpu_seconds": {k: round(b.plane_cpu.get(k, 0) - a.plane_cpu.get(k, 0), 2)
                                      for k in b.plane_cpu},
    }


# -- watching ------------------------------------------------------------------------------------------------------


class Watcher:
    """Convergence of the custom objects and the env of the Deployments, from watches on the namespace."""

    def __init__(self, api: Api, ns: str) -> None:
        self.api, self.ns = api, ns
        self.converged: dict[str, float] = {}  # "Kind/name" -> when first seen converged at its generation
        self.generation: dict[str, int] = {}
        self.status_seen: dict[tuple[str, int], float] = {}  # (Kind/name, observedGeneration) -> first seen
        self.bad: dict[str, str] = {}  # objects whose conditions say something unexpected
        self.deploy_k: dict[str, str] = {}
        self.deploy_seen: dict[str, float] = {}
        self.waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.change = asyncio.Event()

    def start(self) -> None:
        for kind in CR_KINDS:
            self.tasks.append(asyncio.ensure_future(self._cr(kind)))
        self.tasks.append(asyncio.ensure_future(self._deployments()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _cr(self, kind: str) -> None:
        async for type_, obj in self.api.watch(path_for(GROUP_VERSION, kind, self.ns)):
            now = time.monotonic()
            key = f"{kind}/{obj['metadata']['name']}"
            if type_ == "DELETED":
                self.generation.pop(key, None)
                continue
            gen = int(obj["metadata"].get("generation", 1))
            status = obj.get("status") or {}
            observed = status.get("observedGeneration")
            self.generation[key] = gen
            if observed is not None:
                self.status_seen.setdefault((key, int(observed)), now)
                for cond in status.get("conditions") or []:
                    if cond.get("reason") in ("InvalidSpec", "BackendUnavailable", "MLflowUnavailable",
                                              "ModelNotFound", "SecretNotFound"):
                        self.bad[key] = f"{cond['type']}={cond['status']} {cond['reason']}: {cond.get('message')}"
            if observed == gen and status.get("conditions") and key not in self.converged:
                self.converged[key] = now
                self.change.set()

    async def _deployments(self) -> None:
        async for _type, obj in self.api.watch(path_for("apps/v1", "Deployment", self.ns)):
            now = time.monotonic()
            name = obj["metadata"]["name"]
            self.deploy_seen.setdefault(name, now)
            containers = obj["spec"]["template"]["spec"]["containers"]
            value = next((e.get("value") for e in containers[0].get("env") or []
                          if e["name"] == "RECOPS_DEFAULT_K"), None)
            if value is not None and value != self.deploy_k.get(name):
                self.deploy_k[name] = value
                waiter = self.waiters.pop((name, value), None)
                if waiter and not waiter.done():
                    waiter.set_result(now)

    def expect(self, name: str, value: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[(name, value)] = fut
        return fut


# -- phases --------------------------------------------------------------------------------------------------------


async def ensure_namespace(api: Api, ns: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {BENCH_LABEL: "scale"}}}
    await api.call("POST", "/api/v1/namespaces", body, ok=(201, 409))


async def delete_namespace(api: Api, ns: str, timeout: float = 1800) -> float:
    started = time.monotonic()
    await api.call("DELETE", f"/api/v1/namespaces/{ns}", ok=(200, 202, 404))
    while time.monotonic() - started < timeout:
        status, _ = await api.call("GET", f"/api/v1/namespaces/{ns}", ok=(200, 404))
        if status == 404:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise RuntimeError(f"namespace {ns} still there after {timeout}s")


async def strip_finalizers(api: Api, ns: str) -> int:
    """Remove finalizers from custom objects left behind (no operator is running): only in our namespaces."""
    stripped = 0
    for kind in CR_KINDS:
        _, listed = await api.call("GET", path_for(GROUP_VERSION, kind, ns), ok=(200, 404))
        items = [i for i in (listed or {}).get("items") or [] if i["metadata"].get("finalizers")]
        await asyncio.gather(*(api.call("PATCH", path_for(GROUP_VERSION, kind, ns, i["metadata"]["name"]),
                                        {"metadata": {"finalizers": None}}, ctype="application/merge-patch+json",
                                        ok=(200, 404)) for i in items))
        stripped += len(items)
    return stripped


async def remove_leftovers(api: Api) -> None:
    _, listed = await api.call("GET", "/api/v1/namespaces", params={"labelSelector": f"{BENCH_LABEL}=scale"})
    for item in listed.get("items") or []:
        ns = item["metadata"]["name"]
        log(f"removing the leftover namespace {ns} (from an earlier, interrupted run)")
        await strip_finalizers(api, ns)
        await delete_namespace(api, ns)


async def create_all(api: Api, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def create(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return (await api.call("POST", path_for(obj["apiVersion"], obj["kind"], meta["namespace"]), obj))[1]

    return list(await asyncio.gather(*(create(o) for o in objs)))


async def run_writes(api: Api, writes: list[tuple[str, str, Any, str]]) -> None:
    async def one(w: tuple[str, str, Any, str]) -> None:
        verb, path, body, ctype = w
        if verb == "APPLY":
            await api.call("PATCH", path, body, ctype="application/apply-patch+yaml",
                           params={"fieldManager": "recops-operator", "force": "true"})
        else:
            await api.call(verb, path, body, ctype=ctype)

    await asyncio.gather(*(one(w) for w in writes))


def client_writes(writes: list[tuple[str, str, Any, str]], threads: int) -> None:
    """The same writes through the operator's own edge: recops.kube.apply and the Kubernetes client."""
    from recops import kube

    api = kube.api_client()

    def one(w: tuple[str, str, Any, str]) -> None:
        verb, path, body, ctype = w
        if verb == "APPLY":
            kube.apply(body)
        else:
            api.call_api(path, verb, header_params={"Content-Type": ctype, "Accept": "application/json"},
                         body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, writes))


async def floor(api: Api, ns: str, objs: list[dict[str, Any]], monitoring: bool, how: str) -> dict[str, Any]:
    await ensure_namespace(api, ns)
    started = time.monotonic()
    created = await create_all(api, objs)
    create_s = time.monotonic() - started
    writes = [w for body in created for w in essential_writes(body, monitoring)]
    started = time.monotonic()
    if how == "bare":
        await run_writes(api, writes)
    else:
        await asyncio.get_running_loop().run_in_executor(None, client_writes, writes, 8)
    writes_s = time.monotonic() - started
    log(f"floor ({how}): {len(objs)} creates in {create_s:.1f}s, {len(writes)} writes in {writes_s:.1f}s "
        f"({len(writes) / writes_s:.0f}/s)")
    await strip_finalizers(api, ns)
    deleted = await delete_namespace(api, ns)
    return {"how": how, "objects": len(objs), "create_seconds": round(create_s, 2), "writes": len(writes),
            "writes_per_object": round(len(writes) / len(objs), 2), "writes_seconds": round(writes_s, 2),
            "writes_per_second": round(len(writes) / writes_s, 1),
            "floor_seconds": round(create_s + writes_s, 2), "namespace_delete_seconds": round(deleted, 1)}


async def wait_converged(watcher: Watcher, keys: set[str], started: float, timeout: float,
                         label: str) -> dict[str, Any]:
    deadline = started + timeout
    last_log = 0.0
    marks: dict[str, float] = {}
    while True:
        done = len(keys & watcher.converged.keys())
        for q in (0.5, 0.9, 0.99):
            if done >= q * len(keys) and str(q) not in marks:
                marks[str(q)] = time.monotonic() - started
        if done == len(keys):
            break
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"{label}: {done}/{len(keys)} converged after {timeout}s; bad: "
                               f"{list(watcher.bad.items())[:3]}")
        if now - last_log > 10:
            log(f"{label}: {done}/{len(keys)} converged after {now - started:.0f}s")
            last_log = now
        watcher.change.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.change.wait(), 1.0)
    return {"seconds": round(max(watcher.converged[k] for k in keys) - started, 2),
            "seconds_to_50_percent": round(marks["0.5"], 2), "seconds_to_90_percent": round(marks["0.9"], 2),
            "seconds_to_99_percent": round(marks["0.99"], 2)}


async def measure_latency(api: Api, watcher: Watcher, ns: str, names: list[str], value: str,
                          timeout: float = 60, budget: float = 600) -> dict[str, Any]:
    child, status, sent = [], [], []
    timeouts = 0
    started = time.monotonic()
    for name in names:
        if time.monotonic() - started > budget:
            log(f"latency: stopped after {len(child)} samples (the {budget:.0f}s budget is spent)")
            break
        key = f"RecommenderDeployment/{name}"
        waiter = watcher.expect(name, value)
        t0 = time.monotonic()
        _, obj = await api.call("PATCH", path_for(GROUP_VERSION, "RecommenderDeployment", ns, name),
                                {"spec": {"serving": {"defaultK": int(value)}}},
                                ctype="application/merge-patch+json")
        sent.append(time.monotonic() - t0)
        gen = int(obj["metadata"]["generation"])
        try:
            seen = await asyncio.wait_for(waiter, timeout)
            child.append(seen - t0)
        except TimeoutError:
            timeouts += 1
            child.append(float("inf"))
            continue
        # status.observedGeneration of the new generation (written after the children), within 10 s more
        for _ in range(100):
            if (key, gen) in watcher.status_seen:
                status.append(watcher.status_seen[(key, gen)] - t0)
                break
            await asyncio.sleep(0.1)
    finite = [c for c in child if c != float("inf")]

    def ms(v: float | None) -> float | None:
        return None if v is None else round(1000 * v, 1)

    return {"samples": len(child), "timeouts": timeouts, "timeout_seconds": timeout,
            "child_updated_ms": {"median": ms(statistics.median(child)), "p90": ms(pct(child, 0.9)),
                                 "p99": ms(pct(child, 0.99)), "max": ms(max(finite)) if finite else None,
                                 "min": ms(min(finite)) if finite else None},
            "status_written_ms": {"median": ms(statistics.median(status)) if status else None,
                                  "p99": ms(pct(status, 0.99))},
            "patch_round_trip_ms_median": ms(statistics.median(sent)),
            "child_updated_ms_each": [ms(c) if c != float("inf") else None for c in child]}


async def wait_resumed(op: Operator, target: int, timeout: float) -> float:
    """Until kopf logged "Resuming is processed" for every object (its resume handler ran once per object)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if op.log_file.read_text(errors="replace").count("Resuming is processed") >= target:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"fewer than {target} objects resumed within {timeout}s after the restart")


async def run_operator_config(api: Api, name: str, env: dict[str, str], ns: str, objs: list[dict[str, Any]],
                              args: argparse.Namespace, plane: dict[str, psutil.Process], workdir: Path,
                              rng: random.Random) -> dict[str, Any]:
    await ensure_namespace(api, ns)
    op = Operator(name=name, env=env, workdir=workdir)
    op.start()
    await op.wait_ready()
    meter = Meter(api, op, plane)
    meter.start_sampling()
    watcher = Watcher(api, ns)
    watcher.start()
    await asyncio.sleep(2.0)  # the watches are listing; the operator's too
    shown = ("RECOPS_", "PYTHONPATH", "MALLOC_")
    out: dict[str, Any] = {"config": name, "namespace": ns,
                           "env": {k: v for k, v in env.items() if k.startswith(shown)}}
    try:
        s0 = await meter.snapshot()
        started = time.monotonic()
        await create_all(api, objs)
        created = time.monotonic() - started
        keys = {f"{o['kind']}/{o['metadata']['name']}" for o in objs}
        conv = await wait_converged(watcher, keys, started, args.timeout, f"{name} converge")
        s1 = await meter.snapshot()
        if watcher.bad:
            raise RuntimeError(f"unexpected conditions: {list(watcher.bad.items())[:3]}")
        rds = [o["metadata"]["name"] for o in objs if o["kind"] == "RecommenderDeployment"]
        children = {kind: len((await api.call("GET", path_for(av, kind, ns)))[1]["items"])
                    for av, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "CronJob"))}
        out["converge"] = {**conv, "create_seconds": round(created, 2), "objects": len(objs),
                           "children": children, **phase(s0, s1)}
        log(f"{name}: {len(objs)} objects converged in {conv['seconds']:.1f}s (creates took {created:.1f}s); "
            f"children {children}; operator cpu {out['converge']['operator_cpu_seconds']}s, "
            f"{out['converge']['requests_per_reconcile']} requests/reconcile")
        sample = rng.sample(rds, min(args.latency_samples, len(rds)))
        lat = await measure_latency(api, watcher, ns, sample, "20", args.latency_timeout, args.latency_budget)
        s2 = await meter.snapshot()
        out["latency"] = {**lat, **phase(s1, s2)}
        log(f"{name}: reaction median {lat['child_updated_ms']['median']} ms, p99 {lat['child_updated_ms']['p99']} ms "
            f"({lat['timeouts']} timeouts)")
        await asyncio.sleep(args.steady)
        s3 = await meter.snapshot()
        out["steady"] = phase(s2, s3)
        log(f"{name}: steady {out['steady']['operator_cpu_percent']}% cpu, "
            f"{out['steady']['requests_per_second']} requests/s, {out['steady']['reconciles']} reconciles")
        out["peak_rss_mb"] = round(op.peak_rss_mb(), 1)
        out["rss_mb_after_steady"] = round(s3.op_rss_mb, 1)
        if env.get("RECOPS_BENCH_TRACEMALLOC") and op.proc:
            os.kill(op.proc.pid, signal.SIGUSR1)
            await asyncio.sleep(20)
        if args.restart:
            meter.stop_sampling()
            out["stop_seconds"] = round(op.stop(), 2)
            op.start()
            started = time.monotonic()
            await op.wait_ready(timeout=120)
            meter = Meter(api, op, plane)
            meter.start_sampling()
            resumed = await wait_resumed(op, len(objs), args.timeout)
            r0 = await meter.snapshot()
            await asyncio.sleep(max(5.0, args.steady / 2))
            r1 = await meter.snapshot()
            out["restart"] = {"seconds_to_every_object_resumed": round(r0.t - started, 2),
                              "after_ready_seconds": round(resumed, 2), "peak_rss_mb": round(op.peak_rss_mb(), 1),
                              "reconciles_at_resume": r0.reconciles, "operator_cpu_seconds_to_resume":
                                  round(r0.op_cpu, 2), "requests_at_resume": sum(
                                      v for k, v in r0.counts.items() if not k.endswith("new-connection")),
                              "after": phase(r0, r1)}
            log(f"{name}: restart: every object resumed {out['restart']['seconds_to_every_object_resumed']}s "
                f"after the start; peak RSS {out['restart']['peak_rss_mb']} MB")
    finally:
        # Delete the custom objects while the operator runs (it removes its finalizers), then the namespace.
        started = time.monotonic()
        d0 = None
        with contextlib.suppress(Exception):
            d0 = await meter.snapshot()
        for kind in CR_KINDS:
            await api.call("DELETE", path_for(GROUP_VERSION, kind, ns), ok=(200, 404))
        gone = None
        while time.monotonic() - started < args.timeout:
            if op.proc is None or op.proc.poll() is not None:
                break
            left = [k for k in CR_KINDS
                    if (await api.call("GET", path_for(GROUP_VERSION, k, ns), params={"limit": "1"}))[1]["items"]]
            if not left:
                gone = time.monotonic() - started
                break
            await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            if d0 is not None:
                out["delete"] = phase(d0, await meter.snapshot())
        meter.stop_sampling()
        await watcher.stop()
        out["delete_custom_objects_seconds"] = round(gone, 1) if gone is not None else None
        out.setdefault("peak_rss_mb", round(op.peak_rss_mb(), 1) if op.proc and op.proc.poll() is None else None)
        op.stop()
        await strip_finalizers(api, ns)  # only if the operator could not (it stopped or timed out)
        out["delete_namespace_seconds"] = round(await delete_namespace(api, ns), 1)
        out["rss_samples_mb_max"] = round(max((r for _, r in meter.rss_samples), default=0.0), 1)
        out["operator_logs"] = [str(workdir / f"{name}-operator-{i}.log") for i in range(1, op.starts + 1)]
        log(f"{name}: deletion: custom objects gone in {out['delete_custom_objects_seconds']}s, namespace in "
            f"{out['delete_namespace_seconds']}s")
    return out


# -- the lab -------------------------------------------------------------------------------------------------------


def lab_up(keep: bool) -> tuple[Any, list[str], Callable[[], None]]:
    from recops.lab import build, connect, down, up
    from recops.lab.components import K8S_COMPONENTS

    info = connect(components="k8s")
    started: list[str] = []
    if info is None:
        log("starting the lab's control plane (k8s)")
        from recops.lab import status

        before = {n for n, row in status().items() if row.get("ready")}
        info = up(components=["k8s"], bins=build())
        started = [n for n in K8S_COMPONENTS if n not in before]

    def stop() -> None:
        if started and not keep:
            log(f"stopping the lab components this run started: {', '.join(started)}")
            down(components=started)

    return info, started, stop


def kubectl_apply(info: Any, path: Path) -> None:
    subprocess.run([str(info.bin_dir["kubectl"]), f"--kubeconfig={info.kubeconfig}", "apply", "--server-side",
                    "--force-conflicts", "-f", str(path)], check=True, capture_output=True, timeout=120)


async def ensure_service_cidr(api: Api) -> bool:
    """Room for thousands of ClusterIP Services next to the lab's /24 (ServiceCIDR API, GA since 1.33)."""
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": SERVICE_CIDR_NAME, "labels": {BENCH_LABEL: "scale"}},
            "spec": {"cidrs": [SERVICE_CIDR]}}
    path = f"/apis/networking.k8s.io/v1/servicecidrs/{SERVICE_CIDR_NAME}"
    for _ in range(600):  # one an earlier run deleted may still be going (its Services' IPs are released first)
        code, got = await api.call("GET", path, ok=(200, 404))
        if code == 404 or not got["metadata"].get("deletionTimestamp"):
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError(f"the ServiceCIDR {SERVICE_CIDR_NAME} of an earlier run is still being deleted")
    status, _ = await api.call("POST", "/apis/networking.k8s.io/v1/servicecidrs", body, ok=(201, 409))
    for _ in range(50):
        _, got = await api.call("GET", path)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in (got.get("status") or {}).get("conditions", [])):
            return status == 201
        await asyncio.sleep(0.2)
    raise RuntimeError("the benchmark's ServiceCIDR did not become Ready")


def versions(info: Any) -> dict[str, str]:
    import kopf
    import kubernetes

    out = {"python": platform.python_version(), "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "",
           "kubernetes-client": kubernetes.__version__, "aiohttp": aiohttp.__version__}
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        out["kopf"] = version("kopf")
    with contextlib.suppress(Exception):
        got = subprocess.run([str(info.bin_dir["kubectl"]), f"--kubeconfig={info.kubeconfig}", "version", "-o",
                              "json"], capture_output=True, text=True, timeout=30, check=True)
        out["kube-apiserver"] = json.loads(got.stdout)["serverVersion"]["gitVersion"]
    for name in ("kwok", "etcd"):
        with contextlib.suppress(Exception):
            out[name] = Path(str(info.bin_dir[name])).parent.name
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "shared, noisy machine (other workers run tests on the same 2 cores)"}


# -- the report ----------------------------------------------------------------------------------------------------


def summarize(size: int, floors: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_config: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if "converge" in run:
            by_config.setdefault(run["config"], []).append(run)
    floor_s = floors.get("bare", {}).get("floor_seconds")
    out: dict[str, Any] = {}
    for name, items in by_config.items():
        def med(get: Callable[[dict[str, Any]], Any], items: list[dict[str, Any]] = items) -> Any:
            values = [v for v in (get(i) for i in items) if v is not None]
            return statistics.median(values) if values else None

        conv = med(lambda r: r["converge"]["seconds"])
        out[name] = {
            "rounds": len(items),
            "converge_seconds": conv,
            "converge_to_floor_ratio": round(conv / floor_s, 2) if conv and floor_s else None,
            "reaction_median_ms": med(lambda r: r["latency"]["child_updated_ms"]["median"]),
            "reaction_p99_ms": med(lambda r: r["latency"]["child_updated_ms"]["p99"]),
            "status_after_change_median_ms": med(lambda r: r["latency"]["status_written_ms"]["median"]),
            "converge_operator_cpu_seconds": med(lambda r: r["converge"]["operator_cpu_seconds"]),
            "steady_operator_cpu_percent": med(lambda r: r["steady"]["operator_cpu_percent"]),
            "steady_requests_per_second": med(lambda r: r["steady"]["requests_per_second"]),
            "peak_rss_mb": med(lambda r: max(v for v in (r.get("peak_rss_mb"), (r.get("restart") or {})
                                                          .get("peak_rss_mb")) if v is not None)),
            "rss_after_steady_mb": med(lambda r: r.get("rss_mb_after_steady")),
            "restart_peak_rss_mb": med(lambda r: (r.get("restart") or {}).get("peak_rss_mb")),
            "requests_per_reconcile_converge": med(lambda r: r["converge"]["requests_per_reconcile"]),
            "requests_per_object_converge": med(lambda r: round(r["converge"]["requests"] / r["converge"]["objects"],
                                                                2)),
            "writes_per_object_converge": med(lambda r: round(r["converge"]["writes"] / r["converge"]["objects"], 2)),
            "reconciles_per_object_converge": med(lambda r: round(r["converge"]["reconciles"]
                                                                  / r["converge"]["objects"], 2)),
            "restart_seconds_to_every_object_resumed": med(
                lambda r: (r.get("restart") or {}).get("seconds_to_every_object_resumed")),
            "delete_custom_objects_seconds": med(lambda r: r.get("delete_custom_objects_seconds")),
            "delete_namespace_seconds": med(lambda r: r.get("delete_namespace_seconds")),
        }
    if "baseline" in out and "tuned" in out:
        b, t = out["baseline"], out["tuned"]
        out["baseline_over_tuned"] = {k: round(b[k] / t[k], 2) for k in (
            "converge_seconds", "reaction_median_ms", "reaction_p99_ms", "converge_operator_cpu_seconds",
            "steady_operator_cpu_percent", "steady_requests_per_second", "peak_rss_mb") if b.get(k) and t.get(k)}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Scale benchmark (bench/scale/bench_scale.py)", "",
             f"Run {result['started']} on {result['machine']['cpu']} ({result['machine']['cores']} cores, shared). "
             f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}.", "",
             result["definition"], ""]
    if any("PYTHONPATH" in run.get("env", {}) for size in result["sizes"] for run in size["runs"]):
        lines += ["PYTHONPATH in a configuration = a scratch copy of the operator (bench/scale/make_scratch.sh): a "
                  "change measured before it lands (the notes say which).", ""]
    lines += [f"Note: {note}" for note in result.get("notes", [])] + ([""] if result.get("notes") else [])
    for size in result["sizes"]:
        s = size.get("summary") or summarize(size["recommenderdeployments"], size["floors"], size["runs"])
        floors = size["floors"]
        lines += [f"## {size['recommenderdeployments']} RecommenderDeployments + {size['mix_each']} FeaturePipelines"
                  f" + {size['mix_each']} DriftMonitors ({size['objects']} objects)", ""]
        for how, f in floors.items():
            lines.append(f"- floor ({how}): {f['objects']} creates {f['create_seconds']} s + {f['writes']} essential "
                         f"writes {f['writes_seconds']} s ({f['writes_per_second']}/s) = {f['floor_seconds']} s")
        lines.append("")
        for run in size["runs"]:
            if run.get("round", 0) == 0:
                env = " ".join(f"{k}={v}" for k, v in sorted(run.get("env", {}).items())
                               if k not in ("RECOPS_BENCH_COUNTS", "RECOPS_METRICS_PORT", "RECOPS_LOCAL_STATE_DIR"))
                lines.append(f"- {run['config']}: {env}" + (f" (failed: {run['error']})" if "error" in run else ""))
        lines.append("")
        names = [n for n in s if n != "baseline_over_tuned"]
        rows = [("converge (s)", "converge_seconds"), ("converge / floor", "converge_to_floor_ratio"),
                ("reaction median (ms)", "reaction_median_ms"), ("reaction p99 (ms)", "reaction_p99_ms"),
                ("status after change, median (ms)", "status_after_change_median_ms"),
                ("operator CPU to converge (s)", "converge_operator_cpu_seconds"),
                ("steady operator CPU (%)", "steady_operator_cpu_percent"),
                ("steady API requests/s", "steady_requests_per_second"),
                ("peak RSS (MB)", "peak_rss_mb"),
                ("RSS after the quiet window (MB)", "rss_after_steady_mb"),
                ("peak RSS of the restarted operator (MB)", "restart_peak_rss_mb"),
                ("API requests / reconcile (converge)", "requests_per_reconcile_converge"),
                ("API requests / object to converge", "requests_per_object_converge"),
                ("API writes / object to converge", "writes_per_object_converge"),
                ("reconciles / object to converge", "reconciles_per_object_converge"),
                ("restart: every object resumed (s)", "restart_seconds_to_every_object_resumed"),
                ("delete custom objects (s)", "delete_custom_objects_seconds"),
                ("delete namespace / GC (s)", "delete_namespace_seconds")]
        lines.append("| | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for label, key in rows:
            lines.append(f"| {label} | " + " | ".join(str(s[n].get(key)) for n in names) + " |")
        if "baseline_over_tuned" in s:
            lines += ["", "baseline / tuned: " + ", ".join(f"{k} {v}x" for k, v in s["baseline_over_tuned"].items())]
        lines.append("")
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------------------------------------------


def parse_pairs(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        out.setdefault(name, {})[key] = value
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    info, started_components, lab_stop = lab_up(args.keep_lab)
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    from recops.lab.certs import Pki
    from recops.lab.core import load_state

    pki = Pki(Path(info.state_dir) / "pki")
    api = Api(info.server, pki.ca_crt, pki.client_crt("admin"), pki.client_key("admin"))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "scale", "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "versions": versions(info), "argv": sys.argv[1:], "lab_components_started_here": started_components,
        "definition": (
            "Converged = every custom object has status.observedGeneration == metadata.generation (children "
            f"applied, then status written). RecommenderDeployments have replicas: {args.replicas}"
            + (" (no pods: Ready stays Unknown 'Pending' by design)" if args.replicas == 0 else "")
            + ". Reaction = a merge patch of spec.serving.defaultK sent -> the Deployment's env change seen by a "
            "watch. API requests are counted inside the operator process (aiohttp for kopf, urllib3 for the "
            "Kubernetes client). Floor = the bare client's creates + essential writes at its maximum rate "
            f"({CONCURRENCY} in flight)."),
        "sizes": []}
    cidr_created = False
    try:
        kubectl_apply(info, ROOT / "crds")
        monitoring = not args.no_monitoring_crds
        if monitoring:
            kubectl_apply(info, PROM_CRDS)
        await remove_leftovers(api)
        cidr_created = await ensure_service_cidr(api)
        result["service_cidr"] = {"name": SERVICE_CIDR_NAME, "cidr": SERVICE_CIDR, "created_here": cidr_created}
        result["monitoring_crds"] = monitoring
        plane = plane_processes(load_state(Path(info.state_dir)))
        extra_env, extra_path = parse_pairs(args.env), {}
        for item in args.pythonpath:
            name, _, p = item.partition(":")
            extra_path[name] = p
        rng = random.Random(42)
        for n in args.sizes:
            size: dict[str, Any] = {"recommenderdeployments": n, "mix_each": max(1, n // 10), "floors": {},
                                    "runs": []}
            probe = manifests("x", n, args.replicas)
            size["objects"] = len(probe)
            for how in [] if args.no_floor else ["bare"] + ([] if args.no_client_floor else ["client"]):
                objs = manifests(f"recops-scale-floor-{how}-{n}", n, args.replicas)
                size["floors"][how] = await floor(api, f"recops-scale-floor-{how}-{n}", objs, monitoring, how)
            for rnd in range(args.rounds):
                for name in args.configs:
                    ns = f"recops-scale-{name}-{n}-{rnd}"
                    env = {**os.environ, "KUBECONFIG": str(info.kubeconfig), "RECOPS_BACKENDS": "kubernetes",
                           "RECOPS_LOCAL_STATE_DIR": str(workdir / "runs"), **CONFIGS.get(name, {}),
                           **extra_env.get(name, {})}
                    if name in extra_path:
                        env["PYTHONPATH"] = extra_path[name]
                    log(f"size {n}, round {rnd + 1}/{args.rounds}: {name}")
                    try:
                        run = await run_operator_config(api, name, env, ns, manifests(ns, n, args.replicas), args,
                                                        plane, workdir, rng)
                    except Exception as exc:  # recorded: the next configuration still runs
                        log(f"{name} failed: {exc}")
                        run = {"config": name, "error": str(exc)}
                    run["round"] = rnd
                    size["runs"].append(run)
                    write_results({**result, "sizes": [*result["sizes"], size], "partial": True}, args.out)
            size["summary"] = summarize(n, size["floors"], size["runs"])
            result["sizes"].append(size)
            log(json.dumps(size["summary"], indent=1))
    finally:
        if cidr_created:
            await api.call("DELETE", f"/apis/networking.k8s.io/v1/servicecidrs/{SERVICE_CIDR_NAME}", ok=(200, 404))
        await api.close()
        lab_stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--configs", default="baseline,tuned", type=lambda s: s.split(","))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--latency-timeout", type=float, default=60.0, help="a reaction slower than this counts "
                        "as a timeout (an infinite latency in the percentiles)")
    parser.add_argument("--latency-budget", type=float, default=600.0, help="stop sampling after this many seconds")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of the quiet window")
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--env", action="append", default=[], help="CONFIG:NAME=VALUE for that operator")
    parser.add_argument("--pythonpath", action="append", default=[], help="CONFIG:PATH (a scratch copy)")
    parser.add_argument("--no-restart", dest="restart", action="store_false")
    parser.add_argument("--no-client-floor", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip both floors (diagnosis runs)")
    parser.add_argument("--no-monitoring-crds", action="store_true")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--workdir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "recops-bench-scale"))
    parser.add_argument("--out", default=str(RESULTS / "scale.json"), help="results JSON (and the .md beside it)")
    parser.add_argument("--note", action="append", default=[], help="a note for the results (repeatable)")
    parser.add_argument("--render", action="store_true", help="run nothing: add the notes to --out, write its .md")
    args = parser.parse_args()
    if args.render:
        result = json.loads(Path(args.out).read_text())
        result["notes"] = [*result.get("notes", []), *args.note]
        for size in result["sizes"]:  # summaries of an older version of this script lack newer rows
            size["summary"] = summarize(size["recommenderdeployments"], size["floors"], size["runs"])
        write_results(result, args.out)
        log(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
        return 0
    result = {**asyncio.run(amain(args)), "notes": args.note}
    write_results(result, args.out)
    log(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def write_results(result: dict[str, Any], path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    with contextlib.suppress(Exception):  # a partial result may not have a summary yet
        out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    sys.exit(main())

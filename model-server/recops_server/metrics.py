"""Prometheus metrics of the model server (its own registry; labels are low-cardinality only:
route templates, methods, status codes, model name/version, reasons. Never user or item ids)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from itertools import accumulate

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
POPULARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class PopularityHistogram(Collector):
    """``recops_recommended_item_popularity``: a histogram observed in bulk with numpy (a batch of
    1000 users observes 10k values; one ``Histogram.observe`` call each would cost milliseconds)."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = np.asarray(list(buckets), dtype=np.float64)
        self.counts = np.zeros(self.bounds.shape[0] + 1, dtype=np.int64)  # last: +Inf
        self.sum = 0.0

    def observe_many(self, values: np.ndarray) -> None:
        """Called on the event loop thread only."""
        if values.size:
            pos = np.searchsorted(self.bounds, values, side="left")
            self.counts += np.bincount(pos, minlength=self.counts.shape[0])
            self.sum += float(values.sum(dtype=np.float64))

    def collect(self) -> Iterable[HistogramMetricFamily]:
        cum = np.cumsum(self.counts)
        buckets = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cum[:-1], strict=True)]
        buckets.append(("+Inf", int(cum[-1])))
        yield HistogramMetricFamily(
            "recops_recommended_item_popularity",
            "Popularity percentile in the catalogue (1 = most popular) of every recommended item.",
            buckets=buckets,
            sum_value=self.sum,
        )


class RequestMetrics(Collector):
    """``recops_request_duration_seconds`` (histogram by route, method) and ``recops_requests`` (counter by
    route, method, status): the samples a labelled ``Histogram`` and ``Counter`` expose (``_created``
    included, in the same order), kept in plain lists. ``observe`` is called on the event loop thread only
    (the ASGI middleware), so it skips the per-child locks and label checks of prometheus_client: a
    quarter of their cost per request."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self.le = [repr(b) for b in self.bounds] + ["+Inf"]  # as Histogram spells these bounds
        self.counts: dict[tuple[str, str, str], list[float]] = {}  # -> [requests, created]
        self.durations: dict[tuple[str, str], tuple[list[float], list[float]]] = {}  # -> (buckets, [sum, created])

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        """Histogram.observe (the first bucket whose bound is >= seconds) and Counter.inc, exactly."""
        count = self.counts.get((route, method, status))
        if count is None:
            count = self.counts[(route, method, status)] = [0.0, time.time()]
        count[0] += 1.0
        duration = self.durations.get((route, method))
        if duration is None:
            duration = self.durations[(route, method)] = ([0.0] * (len(self.bounds) + 1), [0.0, time.time()])
        duration[0][bisect.bisect_left(self.bounds, seconds)] += 1.0
        duration[1][0] += seconds

    def collect(self) -> Iterable[Metric]:
        hist = HistogramMetricFamily(
            "recops_request_duration_seconds",
            "Request latency by route template and method.",
            labels=["route", "method"],
        )
        for (route, method), (buckets, (total, created)) in list(self.durations.items()):
            hist.add_metric([route, method], list(zip(self.le, accumulate(buckets), strict=True)), total)
            hist.samples.append(Sample(f"{hist.name}_created", {"route": route, "method": method}, created))
        yield hist
        counter = CounterMetricFamily(
            "recops_requests",
            "Requests by route template, method and status code.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), (n, created) in list(self.counts.items()):
            counter.add_metric([route, method, status], n, created=created)
        yield counter


class Metrics:
    """The server's metrics. The request path uses ``observe_request`` and the pre-bound fallback
    children: ``labels()`` validates and locks on every call, a cached child is a dict lookup."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_metrics = RequestMetrics(LATENCY_BUCKETS)
        r.register(self.request_metrics)
        self.scoring_batch_size = Histogram(
            "recops_scoring_batch_size",
            "Single-user requests scored together in one micro-batch (see batcher.py).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        # read at scrape time (the server sets a function returning its counter): nothing per request
        self.in_flight = Gauge("recops_in_flight_requests", "Recommendation requests being served.", registry=r)
        self.overload_rejections = Counter(
            "recops_overload_rejections",
            "Requests answered 503 because the concurrency limit was reached.",
            registry=r,
        )
        self.model_info = Gauge(
            "recops_model_info", "The model version being served (value 1).", ["model", "version"], registry=r
        )
        self.model_ready = Gauge("recops_model_ready", "1 while a verified model is loaded, else 0.", registry=r)
        self.model_loaded_timestamp = Gauge(
            "recops_model_loaded_timestamp_seconds", "When the served model version was loaded.", registry=r
        )
        self.model_reloads = Counter(
            "recops_model_reloads",
            "Model load attempts by result (loaded; refused: failed verification; error: registry down...).",
            ["result"],
            registry=r,
        )
        self.model_refused = Gauge(
            "recops_model_refused_info",
            "A version that was refused (value 1) while the previous one keeps serving.",
            ["model", "version", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "recops_fallback_recommendations",
            "Recommendations served from the popularity fallback, by reason (UnknownUser, NoUser).",
            ["reason"],
            registry=r,
        )
        self.empty_results = Counter(
            "recops_empty_recommendations",
            "Recommendations with no items (filters removed every candidate).",
            registry=r,
        )
        self.recommendations = Counter(
            "recops_recommendations", "Recommendation lists returned (one per user).", registry=r
        )
        self.item_popularity = PopularityHistogram(POPULARITY_BUCKETS)
        r.register(self.item_popularity)
        self.payload_records = Counter(
            "recops_payload_log_records",
            "Sampled payload records by outcome (written, dropped).",
            ["outcome"],
            registry=r,
        )
        self.fallback_children = {reason: self.fallbacks.labels(reason) for reason in ("UnknownUser", "NoUser")}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and observe its latency (route is a template, never a raw path)."""
        self.request_metrics.observe(route, method, str(status), seconds)

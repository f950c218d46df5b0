"""Run `recops operator` with every HTTP request it sends counted (the scale benchmark's request meter).

The Kubernetes API server's `apiserver_request_total` has no client label, so the benchmark counts at the
client instead: both HTTP stacks the operator uses are wrapped before the operator starts, kopf's aiohttp
session (watches, its patches, Events) and the Kubernetes client's urllib3 pool (reconcile.py / kube.py).
Every attempt is counted (retries included), keyed by stack, method and resource, plus the TLS connections
urllib3 opens. Counts go to the JSON file named by RECOPS_BENCH_COUNTS, rewritten every 0.5 s and at exit.

Usage: python bench/scale/counted_operator.py [recops operator arguments...]
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

COUNTS: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def classify(method: str, url: str) -> str:
    """`METHOD resource[/subresource]` (plus ` watch`) from an API URL."""
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if segs[:1] == ["api"]:
        rest = segs[2:]  # api/v1/...
    elif segs[:1] == ["apis"]:
        rest = segs[3:]  # apis/group/version/...
    else:
        return f"{method.upper()} /{'/'.join(segs[:2])}"
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0] if rest else "(discovery)"
    sub = f"/{rest[2]}" if len(rest) >= 3 else ""
    watch = " watch" if "watch=" in parts.query else ""
    return f"{method.upper()} {resource}{sub}{watch}"


def count(stack: str, key: str) -> None:
    with _lock:
        COUNTS[f"{stack} {key}"] += 1


def dump(path: Path) -> None:
    with _lock:
        data = dict(COUNTS)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), "counts": data}))
    os.replace(tmp, path)


def install() -> None:
    import aiohttp
    import urllib3.connectionpool

    original_request = aiohttp.ClientSession._request

    async def counted_request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        count("kopf", classify(method, str(str_or_url)))
        return await original_request(self, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = counted_request  # type: ignore[method-assign]

    original_urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen
    original_new_conn = urllib3.connectionpool.HTTPConnectionPool._new_conn

    def counted_urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count("client", classify(method, url))
        return original_urlopen(self, method, url, *args, **kwargs)

    def counted_new_conn(self: Any) -> Any:
        count("client", "new-connection")
        return original_new_conn(self)

    urllib3.connectionpool.HTTPConnectionPool.urlopen = counted_urlopen  # type: ignore[method-assign]
    urllib3.connectionpool.HTTPConnectionPool._new_conn = counted_new_conn  # type: ignore[method-assign]


def main() -> int:
    path = Path(os.environ["RECOPS_BENCH_COUNTS"])
    install()

    def loop() -> None:
        while True:
            time.sleep(0.5)
            dump(path)

    threading.Thread(target=loop, daemon=True, name="bench-counts").start()
    if os.environ.get("RECOPS_BENCH_TRACEMALLOC"):  # diagnosis only: slows the operator down
        import signal
        import tracemalloc

        tracemalloc.start(8)

        def snapshot(*_: object) -> None:
            snap = tracemalloc.take_snapshot()
            total = sum(stat.size for stat in snap.statistics("filename")) / 2**20
            lines = [f"== {time.strftime('%H:%M:%S')} traced {total:.1f} MB"]
            for stat in snap.statistics("traceback")[:25]:
                lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d} blocks")
                lines += [f"      {frame}" for frame in stat.traceback.format()[-8:]]
            with Path(os.environ["RECOPS_BENCH_TRACEMALLOC"]).open("a") as fh:
                fh.write("\n".join(lines) + "\n")

        signal.signal(signal.SIGUSR1, snapshot)
    atexit.register(dump, path)
    from recops.cli import main as recops_main

    return recops_main(["operator", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())

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
import contextlib
import ctypes
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                        "fsmblks", "uordblks", "fordblks", "keepcost")]


def memdump(path: Path) -> None:
    """Object counts, kopf's per-object memory, asyncio tasks, threads and glibc's heap: where the RSS goes."""
    import asyncio
    import gc

    lines = [f"== {time.strftime('%H:%M:%S')}"]
    status = Path("/proc/self/status").read_text().splitlines()
    lines += [ln for ln in status if ln.startswith(("VmRSS", "VmHWM", "RssAnon", "Threads"))]
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        mi = libc.mallinfo2()
        lines.append(f"glibc: arena (brk) {mi.arena / 2**20:.1f} MB, mmapped {mi.hblkhd / 2**20:.1f} MB, in use "
                     f"{mi.uordblks / 2**20:.1f} MB, free in heap {mi.fordblks / 2**20:.1f} MB, releasable "
                     f"{mi.keepcost / 2**20:.1f} MB")
    objects = gc.get_objects()
    types = collections.Counter(type(o).__qualname__ for o in objects)
    lines.append(f"gc-tracked objects {len(objects)}; top types: "
                 + ", ".join(f"{name} {n}" for name, n in types.most_common(25)))
    loop = asyncio.events._get_running_loop()
    if loop is not None:
        tasks = asyncio.all_tasks(loop)
        names = collections.Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
        lines.append(f"asyncio tasks {len(tasks)}: " + ", ".join(f"{k} {v}" for k, v in names.most_common(10)))
    memories = [o for o in objects if type(o).__name__ == "ResourceMemory"]
    bodies = [m.daemons_memory.live_fresh_body for m in memories]
    raws = [dict(b) for b in bodies if b is not None]
    if raws:
        total = sum(len(json.dumps(r)) for r in raws)
        managed = sum(len(json.dumps(r.get("metadata", {}).get("managedFields"))) for r in raws)
        annotations = sum(len(json.dumps(r.get("metadata", {}).get("annotations"))) for r in raws)
        lines.append(f"kopf ResourceMemory {len(memories)}, live bodies {len(raws)}: JSON {total / 2**20:.1f} MB "
                     f"(managedFields {managed / 2**20:.1f} MB, annotations {annotations / 2**20:.1f} MB)")
    del objects, memories, bodies, raws
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    sys._debugmallocstats()  # pymalloc's arenas, to stderr (the operator's log)


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
    # Diagnosis, costs nothing until asked: `kill -USR2 PID` appends where the memory goes to *.mem.txt.
    import signal

    signal.signal(signal.SIGUSR2, lambda *_: memdump(path.with_suffix(".mem.txt")))
    atexit.register(dump, path)
    from recops.cli import main as recops_main

    return recops_main(["operator", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())

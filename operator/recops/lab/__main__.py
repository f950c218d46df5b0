"""``python -m recops.lab build|deps|up|down|status|env`` (the lead wires ``recops lab`` to these)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from recops.lab.binaries import BuildError, build
from recops.lab.core import connect, down, status, up
from recops.lab.debian import ensure_debian_packages
from recops.lab.procs import LabError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recops.lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build/cached control-plane binaries (Go module proxy)")
    b.add_argument("--only", nargs="*", choices=["k8s", "etcd", "kwok", "helm"])
    b.add_argument("--force", action="store_true")
    sub.add_parser("deps", help="apt-get install the Debian packages the lab uses (when missing)")
    u = sub.add_parser("up", help="start the lab (idempotent)")
    u.add_argument("components", nargs="*", help="components or groups: k8s services all (default all)")
    u.add_argument("--state-dir")
    u.add_argument("--no-build", action="store_true", help="do not build missing binaries")
    d = sub.add_parser("down", help="stop the lab and remove its data")
    d.add_argument("components", nargs="*")
    d.add_argument("--state-dir")
    s = sub.add_parser("status", help="show components, pids, urls")
    s.add_argument("--state-dir")
    s.add_argument("--json", action="store_true")
    e = sub.add_parser("env", help='print export lines for the running lab (eval "$(... env)")')
    e.add_argument("--state-dir")
    a = p.parse_args(argv)
    try:
        if a.cmd == "build":
            build(targets=a.only, force=a.force)
        elif a.cmd == "deps":
            installed = ensure_debian_packages()
            print("installed: " + (" ".join(installed) or "nothing (all present)"))
        elif a.cmd == "up":
            comps = a.components or None
            needs_k8s = comps is None or any(
                c in ("k8s", "kubernetes", "all") or c.startswith(("kube", "etcd", "kwok")) for c in comps
            )
            bins = None
            if needs_k8s and not a.no_build:
                bins = build()
            info = up(components=comps, state_dir=a.state_dir, bins=bins)
            for k, v in info.env.items():
                if k != "PATH":
                    print(f"  {k}={v}" if "DSN" not in k and "SECRET" not in k else f"  {k}=<see lab.json>")
        elif a.cmd == "down":
            down(a.state_dir, components=a.components or None)
        elif a.cmd == "status":
            st = status(a.state_dir)
            if a.json:
                print(json.dumps(st, indent=2))
            elif not st:
                print("lab: nothing running")
            for name, row in st.items():
                if not a.json:
                    flag = "ready" if row["ready"] else ("running" if row["running"] else "DEAD")
                    print(f"{name:<24} {flag:<8} pid={row['pid']!s:<8} {row['url'] or ''}")
        elif a.cmd == "env":
            found = connect(a.state_dir)
            if found is None:
                print("lab is not running (or not healthy): python -m recops.lab up", file=sys.stderr)
                return 1
            for k, v in found.env.items():
                print(f"export {k}={shlex.quote(v)}")
    except (LabError, BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

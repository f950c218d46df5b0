"""`recops`: the product's command line.

    recops operator [--namespace NS ...]     run the operator (kopf)
    recops crds [--check]                    write (or check) the generated CRDs
    recops lab build|up|down|status          the embedded lab (local control plane + services)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _operator(args: argparse.Namespace) -> int:
    import kopf

    import recops.main  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.FULL)
    kopf.run(clusterwide=not args.namespace, namespaces=args.namespace or (), standalone=True,
             liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz")
    return 0


def _crds(args: argparse.Namespace) -> int:
    from recops import crdgen

    targets = [ROOT / "crds", ROOT / "charts" / "recops" / "crds"]
    if args.check:
        stale = [t / name for t in targets for name, text in crdgen.render_all().items()
                 if not (t / name).exists() or (t / name).read_text() != text]
        for path in stale:
            print(f"Stale: {path.relative_to(ROOT)} (run `make crds`)", file=sys.stderr)
        return 1 if stale else 0
    for path in crdgen.write_all(*targets):
        print(f"Wrote {path.relative_to(ROOT)}")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from recops.lab.__main__ import main as lab_main

    return int(lab_main(args.lab_args) or 0)


def _demo(args: argparse.Namespace) -> int:
    from recops.demo import main as demo_main

    return demo_main(args.demo_args)


def _status(args: argparse.Namespace) -> int:
    import json
    import subprocess

    from recops.table import render

    cmd = ["kubectl", "get", "featurepipelines,trainingruns,recommenderdeployments,driftmonitors", "-o", "json"]
    cmd += ["-A"] if args.all_namespaces else (["-n", args.namespace] if args.namespace else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr.strip(), file=sys.stderr)
        return 1
    print(render(json.loads(out.stdout)["items"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recops", description="Recops: the recommender lifecycle operator.")
    sub = parser.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the operator")
    op.add_argument("--namespace", action="append", help="watch only this namespace (repeatable)")
    op.add_argument("--health-port", type=int, default=8081)
    op.add_argument("--json-logs", action="store_true", help="structured JSON log lines")
    op.add_argument("--verbose", action="store_true")
    op.set_defaults(func=_operator)
    crds = sub.add_parser("crds", help="generate crds/ and the chart's copy from the API types")
    crds.add_argument("--check", action="store_true", help="fail when the files are stale")
    crds.set_defaults(func=_crds)
    lab = sub.add_parser("lab", help="the embedded lab: build | up | down | status", add_help=False)
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    lab.set_defaults(func=_lab)
    demo = sub.add_parser("demo", help="the whole loop on the embedded lab (what `make demo` runs)", add_help=False)
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo.set_defaults(func=_demo)
    status = sub.add_parser("status", help="a readable table of every Recops object")
    status.add_argument("-n", "--namespace")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.set_defaults(func=_status)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("demo", "lab"):  # their own parsers take the rest of the line
        return int(parser.parse_args(argv[:1]).func(argparse.Namespace(**{f"{argv[0]}_args": argv[1:]})))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

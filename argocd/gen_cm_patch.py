#!/usr/bin/env python3
"""Render health/<Kind>.lua from the one template health.lua.in, and argocd-cm-patch.yaml from those.

Run after editing the template; a test fails when a generated file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = """\
# Installs the Recops health checks into Argo CD (generated from argocd/health/*.lua by gen_cm_patch.py).
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd/argocd-cm-patch.yaml
# or list it under `patches:` of the kustomization that installs Argo CD.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


# The condition that summarises each kind's health.
SUMMARY = {"FeaturePipeline": "Ready", "TrainingRun": "Succeeded", "RecommenderDeployment": "Ready",
           "DriftMonitor": "Ready"}


def render_checks() -> dict[Path, str]:
    template = "-- Generated from argocd/health.lua.in by gen_cm_patch.py: edit the template, not this file.\n" + \
        (HERE / "health.lua.in").read_text().split("\n", 1)[1]  # without the template's own first line
    return {HERE / "health" / f"{kind}.lua": template.replace("{kind}", kind).replace("{summary}", summary)
            for kind, summary in sorted(SUMMARY.items())}


def render() -> dict[Path, str]:
    checks = render_checks()
    parts = [HEADER]
    for path, text in checks.items():
        parts.append(f"  resource.customizations.health.recops.dev_{path.stem}: |\n")
        parts += [f"    {line}\n" if line else "\n" for line in text.splitlines()]
    return {**checks, HERE / "argocd-cm-patch.yaml": "".join(parts)}


def main() -> int:
    files = render()
    if sys.argv[1:] == ["--check"]:
        stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"Stale: {', '.join(stale)} (run `python argocd/gen_cm_patch.py`)", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.write_text(text)
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

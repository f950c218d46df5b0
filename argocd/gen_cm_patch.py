#!/usr/bin/env python3
"""Write argocd-cm-patch.yaml from health/*.lua (run after editing a check; a test fails when it is stale)."""

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


def render() -> str:
    parts = [HEADER]
    for path in sorted((HERE / "health").glob("*.lua")):
        parts.append(f"  resource.customizations.health.recops.dev_{path.stem}: |\n")
        parts += [f"    {line}\n" if line else "\n" for line in path.read_text().splitlines()]
    return "".join(parts)


def main() -> int:
    target = HERE / "argocd-cm-patch.yaml"
    if sys.argv[1:] == ["--check"]:
        if target.read_text() != render():
            print(f"Stale: {target} (run `python argocd/gen_cm_patch.py`)", file=sys.stderr)
            return 1
        return 0
    target.write_text(render())
    print(f"Wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Code that decides does not import kopf, the Kubernetes client or boto3 (STYLE.md principle 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DECIDING = sorted([*(ROOT / "operator/recops/controllers").glob("*.py"), *(ROOT / "operator/recops/api").glob("*.py"),
                   ROOT / "operator/recops/conditions.py", ROOT / "operator/recops/crdgen.py"])
FORBIDDEN = ("kopf", "kubernetes", "boto3", "botocore", "mlflow", "pandas")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", DECIDING, ids=lambda p: str(p.relative_to(ROOT)))
def test_deciding_code_has_no_edge_imports(path: Path) -> None:
    assert not (_imports(path) & set(FORBIDDEN)), f"{path.name} imports an edge library"

"""Helpers shared by the model server tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from recops_model import RecModel


def tiny_model(shift: float = 0.0, algorithm: str = "puresvd") -> RecModel:
    """u1 saw a; u2 saw b, d. Scores u1: a=1 b=.5 c=0 d=2 (+shift on c). Categories x: a b, y: c d."""
    return RecModel(
        algorithm=algorithm,
        kind="factors",
        user_ids=np.array(["u1", "u2", "u3"]),
        item_ids=np.array(["a", "b", "c", "d"]),
        seen=sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0]], dtype=np.float32)),
        popularity=np.array([4, 3, 2, 1], dtype=np.float32),
        item_categories=np.array(["x", "x", "y", "y"]),
        user_factors=np.array([[1, 0], [0, 1], [1, 1]], np.float32),
        item_factors=np.array([[1, 0], [0.5, 0.5], [shift, 1], [2, 0]], np.float32),
        meta={"version": "test"},
    )


def repoint(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)

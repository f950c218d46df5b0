"""Helpers shared by the model server tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import recops_server.batcher as server_batcher
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


@contextlib.contextmanager
def one_request_in_flight(monkeypatch: pytest.MonkeyPatch, send: Callable[[], Any]) -> Iterator[dict[str, int]]:
    """Run ``send()`` in a thread and hold it inside the scoring kernel until the block ends; yields a dict whose
    ``"status"`` is that request's status code once the block has ended."""
    entered, release = threading.Event(), threading.Event()
    real = server_batcher.recommend_batch

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_batcher, "recommend_batch", slow)
    monkeypatch.setattr(server_batcher, "INLINE_SCORES", 0)  # score in the thread pool, so it can block there
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.setdefault("status", send().status_code))
    t.start()
    try:
        assert entered.wait(10), "the first request never reached the scoring kernel"
        yield result
    finally:
        release.set()
        t.join(10)

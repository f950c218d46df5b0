"""Fixtures for the model server tests: tiny hand-checkable models saved with recops_model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from recops_model import save_model
from recops_server import ServerSettings, create_app

# helpers shared by this directory's tests (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).parent))
from server_testlib import tiny_model


@pytest.fixture
def model_dirs(tmp_path: Path) -> dict[str, Path]:
    """v1, v2 (c scores 3 for u1) and a tampered v3; `current` is a symlink to v1."""
    v1, v2, bad = tmp_path / "v1", tmp_path / "v2", tmp_path / "bad"
    save_model(tiny_model(), v1)
    save_model(tiny_model(shift=3.0), v2)
    save_model(tiny_model(shift=5.0), bad)
    data = bytearray((bad / "item_factors.npy").read_bytes())
    data[-1] ^= 0xFF
    (bad / "item_factors.npy").write_bytes(bytes(data))
    current = tmp_path / "current"
    os.symlink(v1, current)
    return {"v1": v1, "v2": v2, "bad": bad, "current": current}


@pytest.fixture
def make_client(model_dirs: dict[str, Path]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        settings = ServerSettings(
            **{"model_uri": str(model_dirs["current"]), "reload_interval_seconds": 0, **overrides}  # type: ignore[arg-type]
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()

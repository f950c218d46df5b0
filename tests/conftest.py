"""Shared test set-up: the lab fixtures (real control plane and services) as a plugin."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["fixtures.lab"]


@pytest.fixture(autouse=True)
def _isolated_mlflow_uris() -> Iterator[None]:
    """mlflow keeps the tracking and registry URIs in process-global state, and `set_registry_uri` also exports
    them as environment variables that job subprocesses inherit: no test leaks them to the next."""
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # back to the environment's (or MLflow's default)
        mlflow.set_registry_uri(None)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

"""Shared test set-up: the lab fixtures (real control plane and services) as a plugin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["fixtures.lab"]


@pytest.fixture(autouse=True)
def _isolated_mlflow_uris() -> Iterator[None]:
    """mlflow keeps the tracking and registry URIs in process-global state: no test leaks them to the next."""
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # back to the environment's (or MLflow's default)
        mlflow.set_registry_uri(None)

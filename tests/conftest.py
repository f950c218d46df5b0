"""Shared test set-up: the lab fixtures (real control plane and services) as a plugin."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["fixtures.lab"]

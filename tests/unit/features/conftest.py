"""Unit tests of recops_features: pure functions only (no servers, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

FEATURE_JOBS = str(Path(__file__).resolve().parents[3] / "feature-jobs")
if FEATURE_JOBS not in sys.path:
    sys.path.insert(0, FEATURE_JOBS)

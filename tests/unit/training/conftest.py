"""Make the training and model-format packages importable when they are not pip-installed."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
for sub in ("training", "model-format", "feature-jobs"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

"""The reliability tier reuses the integration tier's real components instead of redefining them:

* ``cluster``: the lab's kube-apiserver with our generated CRDs (tests/integration/operator/conftest.py);
* ``serverproc_helpers``: the model server as a real process (tests/integration/server/).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "server"))

from integration.operator.conftest import cluster  # noqa: F401 (a fixture, re-exported for this tier)

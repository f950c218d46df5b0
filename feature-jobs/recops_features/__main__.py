"""``python -m recops_features`` is the same as the ``recops-features`` command."""

import sys

from recops_features.cli import main

sys.exit(main())

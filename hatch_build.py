"""Build hook: compiles recops_model's int8 scoring kernel (model-format/recops_model/_qscore.c) into the
shared library ``_qscore.so`` beside it, loaded with ctypes by ``recops_model._quant``.

Optional by design: without a C compiler (``$CC``, ``cc`` or ``gcc``) the package installs without it, warns,
and scores in float32 throughout (same results, slower on large catalogues). The library holds no Python
API, so one build serves every Python version; the wheel is tagged for the platform.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "model-format/recops_model/_qscore.c"
LIBRARY = "model-format/recops_model/_qscore.so"


class QScoreBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        src, out = Path(self.root, SOURCE), Path(self.root, LIBRARY)
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            self.app.display_warning("recops: no C compiler; the int8 scoring kernel is not built (float32 scoring)")
            return
        cmd = [cc, "-O3", "-fPIC", "-shared", "-Wall", "-o", str(out), str(src)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(f"recops: building the int8 scoring kernel failed (float32 scoring): {detail}")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install finds it in the source tree
            build_data["force_include"][str(out)] = "recops_model/_qscore.so"

"""The chart release under test and a kubeconfig for its ServiceAccount (shared by conftest and the tests)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures.kube import Kubectl


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    persona_prefix: str
    lab: Any

    @property
    def sa_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.lab.helm), *args], capture_output=True, text=True, env=self.lab.env,
                              timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc


def write_token_kubeconfig(release: Release, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a short-lived bound token)."""
    admin = Kubectl(release.lab.kubectl, release.lab.env, release.namespace)
    token = admin.run("create", "token", release.service_account, "--duration=1h").stdout.strip()
    view = admin.run("config", "view", "--raw", "--minify", "-o", "json", namespaced=False).stdout
    cluster = json.loads(view)["clusters"][0]
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
              "users": [{"name": release.service_account, "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": release.service_account}}],
              "current-context": "sa"}
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path

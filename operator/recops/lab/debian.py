"""Install the Debian packages the lab needs (Prometheus, Alertmanager, PostgreSQL) when missing.

Called by ``make lab`` / CI on a fresh machine. Runs ``apt-get update`` at most once per call and
only when something is missing. Needs root (or passwordless sudo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence

from recops.lab.procs import LabError

# The binaries each package provides, used to skip apt entirely when they are already there.
DEBIAN_PACKAGES: dict[str, tuple[str, ...]] = {
    "prometheus": ("/usr/bin/prometheus", "/usr/bin/promtool"),
    "prometheus-alertmanager": ("/usr/bin/prometheus-alertmanager", "/usr/bin/amtool"),
    "postgresql": ("/usr/bin/pg_config",),
}


def missing_packages(packages: Sequence[str]) -> list[str]:
    """Packages dpkg does not report as installed."""
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def _sudo_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    raise LabError(
        "installing Debian packages needs root: run `sudo make lab-deps` (or `sudo python -m recops.lab deps`)"
    )


def ensure_debian_packages(
    packages: Sequence[str] = tuple(DEBIAN_PACKAGES),
    progress: Callable[[str], None] = print,
) -> list[str]:
    """Install the missing ones with apt-get; return what was installed."""
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        raise LabError(
            "this is not a Debian/Ubuntu machine (no apt-get): install "
            + ", ".join(packages)
            + " with your package manager"
        )
    missing = missing_packages(packages)
    if not missing:
        return []
    pre = _sudo_prefix()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    progress(f"[lab deps] apt-get update, then install {' '.join(missing)}")
    up = subprocess.run([*pre, "apt-get", "update"], env=env, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise LabError(f"`apt-get update` failed (exit {up.returncode}): {up.stderr.strip()[-1500:]}")
    inst = subprocess.run(
        [*pre, "apt-get", "install", "-y", "--no-install-recommends", *missing],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if inst.returncode != 0:
        raise LabError(
            f"`apt-get install {' '.join(missing)}` failed (exit {inst.returncode}): {inst.stderr.strip()[-1500:]}"
        )
    still = missing_packages(missing)
    if still:
        raise LabError(f"apt-get finished but these are still not installed: {', '.join(still)}")
    # Debian's postinst may start the services when an init system is present; the lab runs its own
    # instances on free ports, so the system ones are not needed (and are not started in containers).
    return missing

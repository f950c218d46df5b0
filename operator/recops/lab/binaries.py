"""Build the control-plane binaries once from the Go module proxy and cache them, keyed by version.

Layout under the cache root (``$RECOPS_CACHE`` or ``~/.cache/recops``)::

    go/mod, go/build            GOMODCACHE and GOCACHE (never the user's own)
    src/<name>-<version>/       small wrapper modules (go.mod + tools.go)
    bin/<name>-<version>/       the binaries

A target is skipped when every binary in its bin dir answers its version command with the wanted
version. A cold build of Kubernetes takes many minutes on 2 cores; progress is reported through a
callback (a line per ``go: downloading`` burst and a heartbeat every 15 s while ``go`` runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recops.lab.paths import cache_dir, go_env_dirs

Progress = Callable[[str], None]

K8S_VERSION = "v1.35.4"
ETCD_VERSION = "v3.5.35"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# The date is fixed so that builds are reproducible and the cached binaries keep matching.
K8S_BUILD_DATE = "2026-01-01T00:00:00Z"
HEARTBEAT_SECONDS = 15.0


class BuildError(RuntimeError):
    """A build step failed; the message says which step and how to fix it."""


@dataclass(frozen=True)
class Target:
    """One cached set of binaries built by one ``go`` command."""

    name: str
    version: str
    binaries: tuple[str, ...]
    version_cmds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expected: str = ""  # substring every version command must print

    def bin_dir(self, cache: Path) -> Path:
        return cache / "bin" / f"{self.name}-{self.version}"

    def src_dir(self, cache: Path) -> Path:
        return cache / "src" / f"{self.name}-{self.version}"


def k8s_target(version: str = K8S_VERSION) -> Target:
    cmds: dict[str, tuple[str, ...]] = {
        b: ("--version",) for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    cmds["kubectl"] = ("version", "--client")
    return Target("k8s", version, tuple(cmds), cmds, version)


def etcd_target(version: str = ETCD_VERSION) -> Target:
    return Target("etcd", version, ("etcd",), {"etcd": ("--version",)}, f"etcd Version: {version[1:]}")


def kwok_target(version: str = KWOK_VERSION) -> Target:
    return Target("kwok", version, ("kwok",), {"kwok": ("--version",)}, version)


def helm_target(version: str = HELM_VERSION) -> Target:
    return Target("helm", version, ("helm",), {"helm": ("version", "--short")}, version)


def all_targets() -> list[Target]:
    return [k8s_target(), etcd_target(), kwok_target(), helm_target()]


# --------------------------------------------------------------------------- pure helpers


def staging_version(k8s_version: str) -> str:
    """k8s.io/kubernetes v1.35.4 -> staging modules v0.35.4."""
    m = re.fullmatch(r"v1\.(\d+)\.(\d+)(.*)", k8s_version)
    if not m:
        raise ValueError(f"not a Kubernetes 1.x version: {k8s_version!r}")
    return f"v0.{m.group(1)}.{m.group(2)}{m.group(3)}"


def parse_gomod(text: str) -> dict[str, object]:
    """Extract the ``go`` line, ``godebug`` lines and local-path replaces from a go.mod text."""
    go_line = ""
    godebug: list[str] = []
    local_replaces: list[str] = []
    block = ""
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line == ")":
            block = ""
            continue
        if line.endswith("(") and len(line.split()) == 2:
            block = line.split()[0]
            continue
        words = line.split()
        kind, rest = (block, line) if block else (words[0], " ".join(words[1:]))
        if kind == "go" and not block:
            go_line = rest
        elif kind == "godebug":
            godebug.append(rest)
        elif kind == "replace" and "=>" in rest:
            left, right = (s.strip() for s in rest.split("=>", 1))
            if right.startswith(("./", "../")):
                local_replaces.append(left.split()[0])
    return {"go": go_line, "godebug": godebug, "local_replaces": sorted(set(local_replaces))}


def k8s_wrapper_gomod(version: str, kk_gomod: str, module: str = "recops.dev/labbuild") -> str:
    """The wrapper go.mod for building k/k's commands at ``version`` (generated, not hard-coded)."""
    info = parse_gomod(kk_gomod)
    staging = staging_version(version)
    lines = [f"module {module}", ""]
    if info["go"]:
        lines += [f"go {info['go']}", ""]
    for g in info["godebug"]:  # type: ignore[attr-defined]
        lines.append(f"godebug {g}")
    if info["godebug"]:
        lines.append("")
    lines += [f"require k8s.io/kubernetes {version}", ""]
    for mod in info["local_replaces"]:  # type: ignore[attr-defined]
        lines += [f"replace {mod} => {mod} {staging}", ""]
    return "\n".join(lines).rstrip() + "\n"


def simple_wrapper_gomod(require: str, version: str, go_line: str, module: str = "recops.dev/labbuild") -> str:
    lines = [f"module {module}", ""]
    if go_line:
        lines += [f"go {go_line}", ""]
    lines.append(f"require {require} {version}")
    return "\n".join(lines) + "\n"


def k8s_ldflags(version: str, build_date: str = K8S_BUILD_DATE) -> str:
    m = re.fullmatch(r"v(\d+)\.(\d+)\..*", version)
    if not m:
        raise ValueError(version)
    major, minor = m.group(1), m.group(2)
    cb, cg = "k8s.io/component-base/version", "k8s.io/client-go/pkg/version"
    # Same order as the documented hand-run build, so the command line matches it exactly.
    flags = [
        "-s",
        "-w",
        f"-X {cb}.gitVersion={version}",
        f"-X {cg}.gitVersion={version}",
        f"-X {cb}.gitMajor={major}",
        f"-X {cb}.gitMinor={minor}",
        f"-X {cg}.gitMajor={major}",
        f"-X {cg}.gitMinor={minor}",
        f"-X {cb}.gitTreeState=clean",
        f"-X {cb}.buildDate={build_date}",
    ]
    return " ".join(flags)


def go_version_tuple(text: str) -> tuple[int, int, int]:
    """'go version go1.26.8 linux/amd64' or '1.25.0' -> (1, 26, 8)."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def fmt_elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# --------------------------------------------------------------------------- side effects


def _print(msg: str) -> None:
    print(msg, flush=True)


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise BuildError(
            "the Go toolchain was not found on PATH (looked for `go` and /usr/local/go/bin/go). "
            "Install Go >= 1.25 from https://go.dev/dl/ (or `apt-get install golang-go` if recent "
            "enough) and retry; the lab's Kubernetes binaries are built from the Go module proxy."
        )
    return go


def go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(go_env_dirs(cache))
    env.update({"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})
    go = shutil.which("go")
    if not go and Path("/usr/local/go/bin").is_dir():
        env["PATH"] = "/usr/local/go/bin:" + env.get("PATH", "")
    return env


def installed_version_ok(target: Target, cache: Path) -> bool:
    """True when every binary exists and its version command prints the wanted version."""
    bdir = target.bin_dir(cache)
    for b in target.binaries:
        path = bdir / b
        if not path.is_file() or not os.access(path, os.X_OK):
            return False
        try:
            out = subprocess.run(
                [str(path), *target.version_cmds[b]],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if target.expected not in (out.stdout + out.stderr):
            return False
    return True


def _run_with_progress(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    step: str,
    progress: Progress,
    timeout: float = 3 * 3600,
) -> str:
    """Run a go command, relaying its output and a heartbeat line every 15 s; return its output."""
    start = time.monotonic()
    progress(f"[lab build] {step}: started ({' '.join(argv[:2])} ...)")
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    downloads = [0]

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith("go: downloading"):
                downloads[0] += 1
            else:
                progress(f"[lab build] {step}: {line}")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    last = start
    while True:
        try:
            proc.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now - start > timeout:
            proc.kill()
            raise BuildError(f"{step}: timed out after {fmt_elapsed(now - start)}")
        if now - last >= HEARTBEAT_SECONDS:
            last = now
            what = f"downloading/compiling ({downloads[0]} modules fetched)" if downloads[0] else "compiling"
            progress(
                f"[lab build] {step}: still running (go pid {proc.pid}), {fmt_elapsed(now - start)} elapsed, {what}"
            )
    t.join(timeout=5)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        tail = "\n".join(lines[-25:])
        hint = ""
        if re.search(r"proxy\.golang\.org|dial tcp|i/o timeout|no such host|connection refused|TLS", tail):
            hint = (
                f"\nThe Go module proxy looks unreachable (GOPROXY={env.get('GOPROXY') or 'default'}). "
                "Check network access to https://proxy.golang.org or set GOPROXY to a reachable mirror."
            )
        raise BuildError(
            f"{step} failed after {fmt_elapsed(elapsed)} (exit {proc.returncode}): {' '.join(argv)}\n{tail}{hint}"
        )
    progress(f"[lab build] {step}: done in {fmt_elapsed(elapsed)}")
    return "\n".join(lines)


def _go_mod_download(go: str, module: str, version: str, cache: Path, progress: Progress) -> dict[str, str]:
    env = go_env(cache)
    progress(f"[lab build] fetching {module}@{version} metadata from the Go module proxy")
    try:
        out = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=str(cache),
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(
            f"`go mod download {module}@{version}` timed out: the Go module proxy "
            f"(GOPROXY={env.get('GOPROXY') or 'https://proxy.golang.org'}) is unreachable?"
        ) from exc
    try:
        info = json.loads(out.stdout) if out.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    if out.returncode != 0 or info.get("Error") or not info.get("GoMod"):
        err = (info.get("Error") or out.stderr or out.stdout).strip()[-2000:]
        raise BuildError(
            f"could not download {module}@{version} with `go mod download -json`: {err}\n"
            f"Is the Go module proxy reachable (GOPROXY={env.get('GOPROXY') or 'https://proxy.golang.org'})? "
            "Does that version exist (`go list -m -versions " + module + "`)?"
        )
    return info


def _check_go_version(go: str, needed: str) -> None:
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    if needed and go_version_tuple(out) < go_version_tuple(needed):
        raise BuildError(f"{out.strip()} is too old: this build needs Go >= {needed}. Install a newer Go.")


def _write_if_changed(path: Path, text: str, core_lines: Sequence[str]) -> None:
    """Write a wrapper go.mod unless the existing one already has every core line (keeps go.sum)."""
    if path.exists():
        old = path.read_text()
        if all(line in old for line in core_lines):
            return
        (path.parent / "go.sum").unlink(missing_ok=True)
    path.write_text(text)


def build_k8s(target: Target, cache: Path, progress: Progress) -> None:
    go = go_binary()
    info = _go_mod_download(go, "k8s.io/kubernetes", target.version, cache, progress)
    kk_gomod = Path(info["GoMod"]).read_text()
    parsed = parse_gomod(kk_gomod)
    _check_go_version(go, str(parsed["go"]))
    src = target.src_dir(cache)
    src.mkdir(parents=True, exist_ok=True)
    text = k8s_wrapper_gomod(target.version, kk_gomod)
    core = [ln for ln in text.splitlines() if ln.startswith(("require k8s.io/kubernetes", "replace", "godebug"))]
    _write_if_changed(src / "go.mod", text, core)
    (src / "tools.go").write_text("package labbuild\n")
    out = target.bin_dir(cache)
    out.mkdir(parents=True, exist_ok=True)
    pkgs = [f"k8s.io/kubernetes/cmd/{b}" for b in target.binaries]
    progress(
        f"[lab build] building Kubernetes {target.version} ({', '.join(target.binaries)}): a cold build "
        "takes 15-40 minutes on 2 cores; it happens once and is cached in " + str(cache)
    )
    _run_with_progress(
        [go, "build", "-trimpath", "-ldflags", k8s_ldflags(target.version), "-o", str(out) + "/", *pkgs],
        cwd=src,
        env=go_env(cache),
        step=f"go build kubernetes {target.version}",
        progress=progress,
    )


def build_etcd(target: Target, cache: Path, progress: Progress) -> None:
    """etcd's server module has relative replace lines, so `go install` fails: use a wrapper."""
    go = go_binary()
    module = "go.etcd.io/etcd/server/v3"
    info = _go_mod_download(go, module, target.version, cache, progress)
    parsed = parse_gomod(Path(info["GoMod"]).read_text())
    src = target.src_dir(cache)
    src.mkdir(parents=True, exist_ok=True)
    text = simple_wrapper_gomod(module, target.version, str(parsed["go"]))
    _write_if_changed(src / "go.mod", text, [f"require {module} {target.version}"])
    (src / "tools.go").write_text("package labbuild\n")
    out = target.bin_dir(cache)
    out.mkdir(parents=True, exist_ok=True)
    ldflags = "-s -w"
    _run_with_progress(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "etcd"), module],
        cwd=src,
        env=go_env(cache),
        step=f"go build etcd {target.version}",
        progress=progress,
    )


def _go_install(pkg: str, target: Target, cache: Path, progress: Progress, ldflags: str) -> None:
    go = go_binary()
    out = target.bin_dir(cache)
    out.mkdir(parents=True, exist_ok=True)
    env = go_env(cache)
    env["GOBIN"] = str(out)
    env["GOFLAGS"] = ""
    _run_with_progress(
        [go, "install", "-trimpath", "-ldflags", ldflags, f"{pkg}@{target.version}"],
        cwd=cache,
        env=env,
        step=f"go install {pkg}@{target.version}",
        progress=progress,
    )


def build_kwok(target: Target, cache: Path, progress: Progress) -> None:
    ldflags = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={target.version}"
    _go_install("sigs.k8s.io/kwok/cmd/kwok", target, cache, progress, ldflags)


def build_helm(target: Target, cache: Path, progress: Progress) -> None:
    go = go_binary()
    info = _go_mod_download(go, "helm.sh/helm/v3", target.version, cache, progress)
    gomod = Path(info["GoMod"]).read_text()
    m = re.search(r"k8s\.io/client-go v0\.(\d+)\.\d+", gomod)
    ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version={target.version}"
    if m:  # what the helm Makefile stamps: the Kubernetes version of its client libraries
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            ldflags += f" -X {pkg}.k8sVersionMajor=1 -X {pkg}.k8sVersionMinor={m.group(1)}"
    _go_install("helm.sh/helm/v3/cmd/helm", target, cache, progress, ldflags)


KWOK_STAGE_DIRS = (
    "kustomize/stage/node/fast",
    "kustomize/stage/node/heartbeat-with-lease",
    "kustomize/stage/pod/fast",
)
KWOK_STAGES_FILE = "stages.yaml"


def kwok_stages_text(module_dir: Path) -> str:
    """kwokctl's default "fast" stages (node init + lease heartbeat, pods Ready, Job pods Succeeded,
    deletion) as one multi-document config file for the bare ``kwok`` binary (which has none)."""
    docs = []
    for sub in KWOK_STAGE_DIRS:
        for f in sorted((module_dir / sub).glob("*.yaml")):
            if f.name != "kustomization.yaml":
                docs.append(f.read_text().strip())
    if not docs:
        raise BuildError(f"no kwok Stage files found under {module_dir}/kustomize/stage")
    return "\n---\n".join(docs) + "\n"


def ensure_kwok_stages(target: Target, cache: Path, progress: Progress) -> Path:
    out = target.bin_dir(cache) / KWOK_STAGES_FILE
    if out.exists():
        return out
    info = _go_mod_download(go_binary(), "sigs.k8s.io/kwok", target.version, cache, progress)
    out.write_text(kwok_stages_text(Path(info["Dir"])))
    return out


BUILDERS: dict[str, Callable[[Target, Path, Progress], None]] = {
    "k8s": build_k8s,
    "etcd": build_etcd,
    "kwok": build_kwok,
    "helm": build_helm,
}


def _lock(cache: Path) -> int:
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / ".build.lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def build(
    progress: Progress | None = None,
    *,
    targets: Sequence[str] | None = None,
    cache: Path | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Build (or find cached) lab binaries; returns ``{binary name: path}``.

    ``targets`` is a subset of ``k8s``, ``etcd``, ``kwok``, ``helm`` (default: all).
    Only one build runs at a time per cache (file lock).
    """
    progress = progress or _print
    cache = cache or cache_dir()
    chosen = [t for t in all_targets() if targets is None or t.name in targets]
    paths: dict[str, Path] = {}
    fd = _lock(cache)
    try:
        for t in chosen:
            if not force and installed_version_ok(t, cache):
                progress(f"[lab build] {t.name} {t.version}: cached in {t.bin_dir(cache)}")
            else:
                start = time.monotonic()
                BUILDERS[t.name](t, cache, progress)
                if not installed_version_ok(t, cache):
                    raise BuildError(
                        f"{t.name} {t.version} was built but its version command does not report "
                        f"{t.expected!r}; see {t.bin_dir(cache)}"
                    )
                progress(f"[lab build] {t.name} {t.version}: built in {fmt_elapsed(time.monotonic() - start)}")
            if t.name == "kwok":
                paths["kwok-stages"] = ensure_kwok_stages(t, cache, progress)
            for b in t.binaries:
                paths[b] = t.bin_dir(cache) / b
    finally:
        os.close(fd)
    return paths


def binary_paths(cache: Path | None = None) -> dict[str, Path]:
    """Paths of the cached binaries without building (they may not exist)."""
    cache = cache or cache_dir()
    paths = {b: t.bin_dir(cache) / b for t in all_targets() for b in t.binaries}
    paths["kwok-stages"] = kwok_target().bin_dir(cache) / KWOK_STAGES_FILE
    return paths

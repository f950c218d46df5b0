"""Static rules for docker/*.Dockerfile (no Docker engine in CI: the builds are not run here) and the console
scripts the images run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from chartlib import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|cmake|clang|libc6-dev|python3-dev|git|curl|wget)\b")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if pending.strip():
                word, _, rest = pending.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_the_three_images_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"operator.Dockerfile", "server.Dockerfile", "jobs.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_with_pinned_base(path: Path) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in instructions(path) if w == "ARG" and "=" in a}
    froms = [a for w, a in instructions(path) if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: build in one stage, ship another"
    for image in froms:
        ref = image.split()[0]
        ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
        assert ":" in ref or "@sha256:" in ref, f"untagged base image {ref}"
        assert not ref.endswith(":latest"), ref
        assert ref.startswith("python:3.11-slim"), ref
    assert "latest" not in path.read_text().lower().replace("# ", "")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_is_small_and_non_root(path: Path) -> None:
    final = stages(path)[-1]
    users = [a for w, a in final if w == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) == 10001, "numeric non-root UID (runAsNonRoot can verify it)"
    for word, arg in final:
        if word == "RUN":
            assert "apt-get install" not in arg and "apk add" not in arg, f"no packages in the final stage: {arg}"
            assert not BUILD_TOOLS.search(arg), arg
            assert "pip install" not in arg, "the final stage copies a built virtualenv"
        if word == "COPY":
            assert arg.startswith("--from="), f"only build outputs are copied into the final stage: {arg}"
    assert any(w == "HEALTHCHECK" for w, _ in final), "HEALTHCHECK (or HEALTHCHECK NONE with a comment on probes)"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_pip_installs_without_cache_and_with_the_right_extras(path: Path) -> None:
    runs = " ".join(a for w, a in instructions(path) if w == "RUN")
    for command in re.findall(r"pip (?:install|wheel)[^&]*", runs):
        assert "--no-cache-dir" in command, command
    extras = re.search(r"\[([a-z,]+)\]", runs)
    assert extras, "the project is installed with its extras"
    wanted = {"operator.Dockerfile": {"operator"}, "server.Dockerfile": {"server"},
              "jobs.Dockerfile": {"features", "training", "drift"}}[path.name]
    assert set(extras.group(1).split(",")) == wanted
    assert wanted <= set(PYPROJECT["project"]["optional-dependencies"])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_entry_points_are_console_scripts(path: Path) -> None:
    text = path.read_text()
    programs = set(re.findall(r"\b(recops(?:-[a-z]+)?)\b(?=\s*--help|\"\])", text))
    for word, arg in instructions(path):
        if word in ("ENTRYPOINT", "CMD") and arg.startswith("["):
            first = shlex.split(arg.strip("[]").replace(",", " "))[0]
            if first.startswith("recops"):
                programs.add(first)
    assert programs and programs <= set(SCRIPTS), programs


@pytest.mark.parametrize("argv", [["recops", "operator", "--help"], ["recops-serve", "--help"],
                                  ["recops-features", "--help"], ["recops-train", "--help"],
                                  ["recops-drift", "--help"]], ids=lambda a: a[0])
def test_console_scripts_run(argv: list[str]) -> None:
    assert argv[0] in SCRIPTS
    script = Path(sys.executable).parent / argv[0]
    assert script.exists(), f"{argv[0]} is not installed as a console script in {script.parent}"
    proc = subprocess.run([str(script), *argv[1:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage" in proc.stdout.lower(), proc.stderr


def test_dockerignore_per_dockerfile() -> None:
    for path in DOCKERFILES:
        ignore = path.with_name(path.name + ".dockerignore")
        assert ignore.exists() and ignore.read_text().splitlines()[1] == "**"

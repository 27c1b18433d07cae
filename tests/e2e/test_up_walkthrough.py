"""The walkthrough on `kubenats up` with the real Docker engine, kernel rules and kubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.walkthrough import Walkthrough
from tests.kubelet.images import ensure_test_images
from tests.servers import ROOT, free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="programs kernel NAT rules and Docker: needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the Docker engine"),
]


def ready(api: str, data: Path) -> bool:
    ca = data / "pki" / "ca.crt"
    return ca.exists() and httpx.get(api + "/readyz", timeout=1, verify=ssl.create_default_context(cafile=str(ca))).status_code == 200


def test_walkthrough_on_kubenats_up(tmp_path: Path) -> None:
    ensure_test_images()
    node = "walk-" + uuid.uuid4().hex[:6]
    data = tmp_path / "kn"
    ports = {"api": free_port(), "etcd": free_port(), "nats": free_port()}
    api = f"https://127.0.0.1:{ports['api']}"
    logfile = open(tmp_path / "up.log", "ab")  # handed to the child, closed with it
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--data-dir", str(data),
                           "--api-port", str(ports["api"]), "--etcd-port", str(ports["etcd"]),
                           "--nats-port", str(ports["nats"]), "--node-name", node,
                           "--pause-image", "kubenats/pause:test", "--disable", "scheduler"],
                          cwd=ROOT, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    scheduler: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: ready(api, data), 60, "kubenats up")
        w = Walkthrough(data / "kubeconfig", tmp_path, "kubenats/busybox:test", log=print)
        w.node_ready(node)
        w.static_pod(data / "manifests", node)
        w.pending_without_scheduler(node)
        scheduler = subprocess.Popen([sys.executable, "-m", "services.cli", "scheduler",
                                      "--kubeconfig", str(data / "kubeconfigs" / "scheduler.yaml"),
                                      "--nats-user", "scheduler",
                                      "--nats-password-file", str(data / "nats" / "users" / "scheduler"),
                                      "--nats-url", f"nats://127.0.0.1:{ports['nats']}"],
                                     cwd=ROOT, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        w.scheduled()
        names = w.deployment()
        node_obj = json.loads(w.kubectl("get", "node", node, "-o", "json"))
        node_ip = next(a["address"] for a in node_obj["status"]["addresses"] if a["type"] == "InternalIP")
        w.nodeport(node_ip, names)
        w.clusterip(names)
        w.scale_into_rotation(5)
        w.kubectl_story(node)
        w.job()
    except BaseException:
        print((tmp_path / "up.log").read_text(errors="replace")[-20000:])
        raise
    finally:
        for p in (scheduler, up):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(f"docker rm -f $(docker ps -aq --filter label=kubenats.io/node={node}) 2>/dev/null",
                       shell=True, check=False)
        subprocess.run([sys.executable, "-m", "services.cli", "proxy", "--cleanup"], cwd=ROOT, check=False,
                       capture_output=True)

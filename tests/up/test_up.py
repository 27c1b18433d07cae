"""`kubenats up` runs a single-host cluster as child processes and stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import ROOT, free_port, wait_for


def start_up(data: Path, ports: dict[str, int], disable: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "services.cli", "up", "--data-dir", str(data),
            "--api-port", str(ports["api"]), "--etcd-port", str(ports["etcd"]), "--nats-port", str(ports["nats"]),
            "--disable", disable]
    log = open(data.parent / "up.log", "ab")  # handed to the child, closed with it
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def ready(url: str, data: Path) -> bool:
    ca = data / "pki" / "ca.crt"
    return ca.exists() and httpx.get(url + "/readyz", timeout=1,
                                     verify=ssl.create_default_context(cafile=str(ca))).status_code == 200


def test_up_runs_restarts_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "kn"
    ports = {"api": free_port(), "etcd": free_port(), "nats": free_port()}
    url = f"https://127.0.0.1:{ports['api']}"
    disable = "scheduler,controllers,kubelet,proxy"
    proc = start_up(data, ports, disable)
    try:
        wait_for(lambda: ready(url, data), 60, "kubenats up")
        ca_before = (data / "pki" / "ca.crt").read_bytes()
        ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
        # secure without extra steps: no plain HTTP, no anonymous access, etcd and NATS on loopback
        # only, NATS with users
        try:
            httpx.get(f"http://127.0.0.1:{ports['api']}/api", timeout=5)
            raise AssertionError("the apiserver answered plain HTTP")
        except httpx.HTTPError:
            pass
        r = httpx.get(url + "/api/v1/namespaces", timeout=5, verify=ctx)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=False).stdout
        for port in (ports["etcd"], ports["nats"], ports["api"]):
            binds = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
            assert binds and all(b.startswith("127.0.0.1:") for b in binds), (port, binds)
        with socket.create_connection(("127.0.0.1", ports["nats"]), timeout=5) as s:
            info = json.loads(s.recv(4096).decode().split(" ", 1)[1])
        assert info.get("auth_required") is True
        kubeconfig = data / "kubeconfig"
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
        r = subprocess.run(["kubectl", "create", "configmap", "kept", "--from-literal=a=1"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        kids = children_of(proc.pid)
        assert len(kids) == 3, kids  # etcd, nats, apiserver
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        time.sleep(0.5)
        assert not [k for k in kids if os.path.exists(f"/proc/{k}") and "zombie" not in Path(f"/proc/{k}/status").read_text().lower()]
        out = (data.parent / "up.log").read_text()
        assert "[apiserver] " in out and "[etcd] " in out and "[up] stopped" in out

        proc = start_up(data, ports, disable)
        wait_for(lambda: ready(url, data), 60, "kubenats up again")
        assert (data / "pki" / "ca.crt").read_bytes() == ca_before  # credentials are kept
        r = subprocess.run(["kubectl", "get", "configmap", "kept", "-o", "jsonpath={.data.a}"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0 and r.stdout == "1", r.stderr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_missing_dependency_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "services.cli", "up", "--data-dir", str(tmp_path / "d")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "kubenats up: etcd not found on PATH; install it (apt-get install etcd-server)"

"""`kubenats up` runs a single-host cluster as child processes and stops it cleanly."""

from __future__ import annotations

import os
import signal
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


def test_up_runs_restarts_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "kn"
    ports = {"api": free_port(), "etcd": free_port(), "nats": free_port()}
    url = f"http://127.0.0.1:{ports['api']}"
    disable = "scheduler,controllers,kubelet,proxy"
    proc = start_up(data, ports, disable)
    try:
        wait_for(lambda: httpx.get(url + "/readyz", timeout=1).status_code == 200, 60, "kubenats up")
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
        wait_for(lambda: httpx.get(url + "/readyz", timeout=1).status_code == 200, 60, "kubenats up again")
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

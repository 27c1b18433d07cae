"""Real servers for tests and benchmarks: etcd, nats-server and the kubenats apiserver.

Each is started as a child process on free loopback ports with its data in a temporary folder,
waited for until it answers, and stopped (or SIGKILLed, for crash tests) on request.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up in {timeout}s (last error: {last})")


class Proc:
    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        fh = open(self.log, "ab")
        self.p = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                  cwd=ROOT, start_new_session=True)
        fh.close()

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Etcd(Proc):
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        peer = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        super().__init__("etcd", [
            binary, "--name", "test", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}", "--log-level", "warn", "--quota-backend-bytes", str(8 << 30),
        ], workdir / "etcd.log", env={**os.environ, "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "")})

    def start(self) -> None:
        super().start()
        wait_for(lambda: httpx.get(self.url + "/health", timeout=1).status_code == 200, 20, "etcd")


class Nats(Proc):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.monitor = free_port()
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        super().__init__("nats", [binary, "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
                                  "-js", "-sd", str(workdir / "nats")], workdir / "nats.log")

    def subscriptions(self, conn_name: str) -> int:
        """Subscriptions held by the named client connection (from the monitoring endpoint)."""
        data = httpx.get(f"http://127.0.0.1:{self.monitor}/connz", params={"subs": "1"}, timeout=5).json()
        return sum(int(c.get("subscriptions", 0)) for c in data.get("connections", []) if c.get("name") == conn_name)

    def start(self) -> None:
        super().start()

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_for(up, 20, "nats-server")


class Apiserver(Proc):
    def __init__(self, workdir: Path, etcd: Etcd, nats: Nats, extra: list[str] | None = None, tag: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("apiserver", [
            sys.executable, "-m", "services.cli", "apiserver", "--port", str(self.port),
            "--etcd-servers", etcd.url, "--nats-url", nats.url, *(extra or []),
        ], workdir / f"apiserver{tag}.log")

    def start(self) -> None:
        super().start()

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError("apiserver exited:\n" + self.tail())
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        wait_for(ready, 30, "apiserver")


class Cluster:
    """etcd + nats + apiserver in one temporary folder."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kubenats-test-"))
        self.etcd = Etcd(self.workdir)
        self.nats = Nats(self.workdir)
        self.apiserver = Apiserver(self.workdir, self.etcd, self.nats)

    def start(self) -> Cluster:
        self.etcd.start()
        self.nats.start()
        self.apiserver.start()
        return self

    def stop(self) -> None:
        for p in (self.apiserver, self.nats, self.etcd):
            p.stop()
        if not os.environ.get("KUBENATS_KEEP_TEST_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kubeconfig(self) -> Path:
        path = self.workdir / "kubeconfig"
        path.write_text(kubeconfig_text(self.apiserver.url))
        return path


def kubeconfig_text(server: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: kubenats
  cluster:
    server: {server}
contexts:
- name: kubenats
  context:
    cluster: kubenats
    user: admin
current-context: kubenats
users:
- name: admin
  user: {{}}
"""

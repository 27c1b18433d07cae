"""Helpers for the proxy's real-kernel tests: skip reasons, a busybox web image, containers, requests.

The network rule of this project (see /work/shared/ENVIRONMENT.md) shapes everything here:
traffic goes only to this machine (service IPs made `local` first, the node's own address) and
to containers these tests started. `assert_local(ip)` checks the routing table (a lookup, no
packet) before any connection to a service IP.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import ROOT, free_port, wait_for

BUSYBOX = "/bin/busybox"
IMAGE = "kubenats/proxy-test:1"
LABEL = "kubenats.test=proxy"
APPLETS = ("sh", "httpd", "wget", "sleep", "cat", "echo", "nc")


def skip_reason() -> str | None:
    """Why the kernel/Docker tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (nftables, routes, conntrack)"
    for tool in ("nft", "ip", "docker"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if not Path(BUSYBOX).exists():
        return "busybox-static is not installed (apt-get install -y busybox-static)"
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or not r.stdout.strip():
        return f"no Docker engine: {r.stderr.strip()[:200]}"
    return None


def ensure_image() -> str:
    """A tiny image from the host's static busybox: no registry exists on these machines."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return IMAGE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "www", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        data = Path(BUSYBOX).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    subprocess.run(["docker", "import", "--change", "ENV PATH=/bin", "-", IMAGE], input=buf.getvalue(),
                   check=True, capture_output=True)
    return IMAGE


def run_web(name: str) -> str:
    """A container serving its own name on port 80 (and /www); returns its IP on the docker bridge."""
    script = (f"echo {name} > /www/index.html; trap 'exit 0' TERM; "
              "httpd -f -p 80 -h /www & wait")
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", LABEL, IMAGE, "sh", "-c", script],
                   check=True, capture_output=True, timeout=60)
    return container_ip(name)


def run_idle(name: str) -> str:
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", LABEL, IMAGE, "sh", "-c",
                    "trap 'exit 0' TERM; sleep 3600 & wait"], check=True, capture_output=True, timeout=60)
    return container_ip(name)


def container_ip(name: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out, f"container {name} has no IP"
    return out


def remove_containers(names: list[str]) -> None:
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)


def route_get(ip: str) -> str:
    """`ip route get` only consults the routing tables; nothing is sent."""
    return subprocess.run(["ip", "-4", "route", "get", ip], capture_output=True, text=True).stdout.strip()


def assert_local(ip: str) -> None:
    out = route_get(ip)
    assert out.startswith("local "), f"{ip} is not routed locally; refusing to send traffic to it: {out!r}"


def node_ip() -> str:
    """The machine's primary address (the source of its default route; a lookup, nothing sent)."""
    words = route_get("1.1.1.1").split()
    return words[words.index("src") + 1]


def http_get(ip: str, port: int, timeout: float = 3.0, path: str = "/") -> str:
    """The body of one request on a new connection (so each request is load-balanced on its own)."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ConnectionError(f"not an HTTP answer: {raw[:80]!r}")
    return body.decode(errors="replace").strip()


def hits_from_host(ip: str, port: int, n: int) -> Counter[str]:
    return Counter(http_get(ip, port) for _ in range(n))


def hits_from_container(container: str, ip: str, port: int, n: int) -> Counter[str]:
    # NB: busybox 1.35's `wget -T` segfaults; plain wget it is
    script = f"i=0; while [ $i -lt {n} ]; do wget -qO- http://{ip}:{port}/ || echo FAILED; i=$((i+1)); done"
    r = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True, timeout=120)
    return Counter(line.strip() for line in r.stdout.splitlines() if line.strip())


class ProxyProcess:
    """`kubenats proxy` as a child process with a test table name and a free healthz port."""

    def __init__(self, conn: list[str], nats: str, cidr: str, table: str, log: Path, extra: list[str] | None = None) -> None:
        self.healthz = free_port()
        self.argv = [sys.executable, "-m", "services.cli", "proxy", *conn, "--nats-url", nats,
                     "--service-cluster-ip-range", cidr, "--nftables-table", table,
                     "--healthz-bind-address", f"127.0.0.1:{self.healthz}", *(extra or [])]
        self.cleanup_argv = [sys.executable, "-m", "services.cli", "proxy", "--cleanup",
                             "--service-cluster-ip-range", cidr, "--nftables-table", table]
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        with open(self.log, "ab") as fh:
            self.p = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        if wait:
            wait_for(self.healthy, 30, "kubenats proxy")

    def healthy(self) -> bool:
        if self.p is None or self.p.poll() is not None:
            raise RuntimeError("proxy exited:\n" + self.tail())
        with socket.create_connection(("127.0.0.1", self.healthz), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)

    def cleanup(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cleanup_argv, cwd=ROOT, capture_output=True, text=True, timeout=60)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def syncs(self) -> int:
        return self.log.read_text(errors="replace").count('"event":"sync"')


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@contextmanager
def containers() -> Iterator[list[str]]:
    """Collects container names and removes them all on exit, failure included."""
    names: list[str] = []
    try:
        yield names
    finally:
        remove_containers(names)


def eventually(check: object, timeout: float, what: str) -> float:
    """Poll until check() is truthy; returns the seconds it took."""
    start = time.monotonic()
    wait_for(lambda: check(), timeout, what)  # type: ignore[operator]
    return time.monotonic() - start

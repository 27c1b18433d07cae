"""Real servers for tests and benchmarks: etcd, nats-server and the kubenats apiserver.

Each is started as a child process on free loopback ports with its data in a temporary folder,
waited for until it answers, and stopped (or SIGKILLed, for crash tests) on request.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.up import cluster as cluster_files
from shared import pki
from shared.bus import BusOptions
from shared.client import ApiClient
from shared.netinfo import host_addresses

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
    """nats-server with JetStream; open to anyone, or with a configuration file (`use_config`:
    the cluster's users and permissions, see services/up/cluster.py)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.monitor = free_port()
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        super().__init__("nats", [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
                                  "-js", "-sd", str(workdir / "nats")], workdir / "nats.log")

    def use_config(self, conf: Path) -> None:
        self.argv = [self.binary, "-c", str(conf)]

    def reload(self) -> None:
        """Re-read the configuration file (new users) without dropping connections."""
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGHUP)

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


def admin_ssl(workdir: Path) -> ssl.SSLContext:
    """Trust the cluster CA in workdir/pki and present the admin client certificate."""
    ctx = ssl.create_default_context(cafile=str(workdir / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(workdir / "pki" / "admin.crt"), str(workdir / "pki" / "admin.key"))
    return ctx


class Apiserver(Proc):
    """The apiserver on HTTPS, its certificates in workdir/pki (shared with the cluster's clients)."""

    def __init__(self, workdir: Path, etcd: Etcd, nats: Nats, extra: list[str] | None = None, tag: str = "",
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        password = workdir / "nats" / "users" / "apiserver"  # a cluster's NATS has users: be the apiserver
        nats_args = ["--nats-user", "apiserver", "--nats-password-file", str(password)] if password.exists() else []
        if (workdir / "tokens.csv").exists():
            nats_args += ["--token-auth-file", str(workdir / "tokens.csv")]
        self.url = f"https://127.0.0.1:{self.port}"
        super().__init__("apiserver", [
            sys.executable, "-m", "services.cli", "apiserver", "--port", str(self.port), "--data-dir", str(workdir),
            "--etcd-servers", etcd.url, "--nats-url", nats.url, *nats_args, *(extra or []),
        ], workdir / f"apiserver{tag}.log")

    def start(self) -> None:
        super().start()
        ctx: list[ssl.SSLContext] = []

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError("apiserver exited:\n" + self.tail())
            if not ctx:
                if not (self.workdir / "pki" / "admin.key").exists():
                    return False
                ctx.append(admin_ssl(self.workdir))
            return httpx.get(self.url + "/readyz", timeout=1, verify=ctx[0]).status_code == 200
        try:
            wait_for(ready, 60, "apiserver")
        except TimeoutError as e:  # say what it was doing
            raise TimeoutError(f"{e}\napiserver log:\n{self.tail()}") from None


# bearer tokens every test cluster accepts (`--token-auth-file`): token -> (user, uid, groups)
TOKENS = {"nobody-token": ("nobody", "1001", ""), "viewer-token": ("viewer", "1002", "viewers")}


class Cluster:
    """etcd + nats + apiserver in one temporary folder."""

    def __init__(self, workdir: Path | None = None, apiserver_extra: list[str] | None = None) -> None:
        """`apiserver_extra`: more apiserver flags (default: $KUBENATS_APISERVER_ARGS, which the
        benchmarks set for `python -m bench --apiserver-workers N`)."""
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kubenats-test-"))
        self.etcd = Etcd(self.workdir)
        self.nats = Nats(self.workdir)
        api_port = free_port()
        self._nodes: set[str] = set()
        self.files = self._prepare(f"https://127.0.0.1:{api_port}")
        (self.workdir / "tokens.csv").write_text("".join(f'{token},{user},{uid},"{groups}"\n'
                                                        for token, (user, uid, groups) in TOKENS.items()))
        self.nats.use_config(self.files.nats_conf)
        if apiserver_extra is None:
            apiserver_extra = os.environ.get("KUBENATS_APISERVER_ARGS", "").split()
        self.apiserver = Apiserver(self.workdir, self.etcd, self.nats, port=api_port, extra=apiserver_extra)
        self._ssl: ssl.SSLContext | None = None

    def _prepare(self, server_url: str) -> cluster_files.ClusterFiles:
        names, ips = host_addresses()  # kubelets advertise the primary address as their InternalIP
        return cluster_files.prepare(self.workdir, server_url=server_url, nats_port=self.nats.port,
                                     nodes=sorted(self._nodes), hollow=True, nats_http_port=self.nats.monitor,
                                     nats_store_dir=str(self.workdir / "nats"), hosts=names, ips=ips)

    @property
    def pki(self) -> pki.ClusterPki:
        return self.files.pki

    def add_node(self, node: str) -> None:
        """Credentials for a kubelet of this node name (a NATS user too: nats-server reloads)."""
        if node and node not in self._nodes:
            self._nodes.add(node)
            self.files = self._prepare(f"https://127.0.0.1:{self.apiserver.port}")
            self.nats.reload()
            time.sleep(0.2)  # the reload is asynchronous

    def bus_options(self, user: str = "admin") -> BusOptions:
        """NATS credentials of one of the cluster's users (admin reads everything, publishes nothing;
        `apiserver` may publish kube.>, for tests that play the apiserver)."""
        return BusOptions(user=user, password=self.files.nats_users[user].read_text())

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
        """The admin kubeconfig (kubectl, the Python client, `--kubeconfig` of any component)."""
        path = self.workdir / "kubeconfig"
        doc = yaml.safe_load(self.pki.kubeconfigs["admin"].read_text())
        doc["clusters"][0]["cluster"]["server"] = self.apiserver.url  # tests may replace the apiserver
        path.write_text(yaml.safe_dump(doc))
        return path

    @property
    def ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = admin_ssl(self.workdir)
        return self._ssl

    def admin_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client` / `httpx.AsyncClient` as the cluster admin."""
        return {"base_url": self.apiserver.url, "verify": self.ssl}

    def python_client_config(self) -> Any:
        """A `kubernetes.client.Configuration` as the cluster admin."""
        from kubernetes import client  # only the tests that use the official client import it
        cfg = client.Configuration()
        cfg.host = self.apiserver.url
        admin = self.pki.clients["admin"]
        cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file = str(self.pki.ca.cert), str(admin.cert), str(admin.key)
        return cfg

    def api_client(self, user_agent: str = "kubenats-test") -> ApiClient:
        """`shared.client.ApiClient` as the cluster admin."""
        admin = self.pki.clients["admin"]
        return ApiClient(self.apiserver.url, ca_file=str(self.pki.ca.cert), cert=(str(admin.cert), str(admin.key)),
                         user_agent=user_agent)

    def component_args(self, component: str, node: str = "") -> list[str]:
        """Command-line flags that point a component (scheduler, controllers, proxy, kubelet,
        events) at this cluster with its own identity: kubeconfig and NATS user; a kubelet of one
        node (node="" is a hollow fleet) also gets its serving certificate and the client CA."""
        if component == "kubelet":
            self.add_node(node)
        return [*cluster_files.flags(self.files, component, node), "--master", self.apiserver.url]

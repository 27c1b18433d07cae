"""`kubenats up`: a whole single-host cluster as child processes, without Compose.

etcd and nats-server come from PATH, then the apiserver and the other components from this
installation. Every child's output is merged into one stream, each line prefixed with the
component's name; SIGINT/SIGTERM stops everything in reverse order. State lives in
`--data-dir` (default ~/.kubenats), so a restart on the same folder finds every object again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from shared.netinfo import host_addresses

from . import cluster

COMPONENTS = ("apiserver", "scheduler", "controllers", "kubelet", "proxy")
INSTALL_HINT = {"etcd": "apt-get install etcd-server", "nats-server": "apt-get install nats-server"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=str(Path.home() / ".kubenats"))
    p.add_argument("--api-port", type=int, default=6443)
    p.add_argument("--etcd-port", type=int, default=2379)
    p.add_argument("--nats-port", type=int, default=4222)
    p.add_argument("--node-name", default=socket.gethostname().lower())
    p.add_argument("--runtime", choices=["docker", "hollow"], default="docker")
    p.add_argument("--pause-image", default="registry.k8s.io/pause:3.10")
    p.add_argument("--disable", default="", help="comma-separated components not to run")
    p.add_argument("--service-cluster-ip-range", default="10.0.0.0/16")


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.env,
            start_new_session=True)
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        prefix = f"[{self.name}] ".encode()
        while line := await self.proc.stdout.readline():
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pump, 2)


async def wait_port(port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.returncode is not None:
            raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not listen on port {port} within {timeout:.0f}s")


async def wait_ready(url: str, child: Child, ca: Path, timeout: float = 60.0) -> None:
    import ssl

    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2, verify=ssl.create_default_context(cafile=str(ca))) as client:
        while time.monotonic() < deadline:
            if child.proc is not None and child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} not ready within {timeout:.0f}s")


def component_available(name: str) -> bool:
    return importlib.util.find_spec(f"services.{name}.main") is not None


def prepare(args: argparse.Namespace) -> tuple[cluster.ClusterFiles, dict[str, str], set[str]] | int:
    """Folders, binaries and configuration files; an int is an exit code after an error."""
    data = Path(args.data_dir).expanduser()
    for folder in ("etcd", "nats", "manifests", "kubelet"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    os.chmod(data / "etcd", 0o700)
    binaries = {}
    for binary in ("etcd", "nats-server"):
        path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
        if path is None:
            print(f"kubenats up: {binary} not found on PATH; install it ({INSTALL_HINT[binary]})", file=sys.stderr)
            return 1
        binaries[binary] = path
    disabled = {d.strip() for d in args.disable.split(",") if d.strip()}
    unknown = disabled - set(COMPONENTS)
    if unknown:
        print(f"kubenats up: unknown component(s) in --disable: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        names, ips = host_addresses()  # the kubelet's serving certificate must name the node's InternalIP
        files = cluster.prepare(data, server_url=f"https://127.0.0.1:{args.api_port}", nats_port=args.nats_port,
                                nodes=[args.node_name], nats_store_dir=str(data / "nats"), hosts=names, ips=ips)
    except (OSError, ValueError) as e:
        print(f"kubenats up: cannot prepare credentials in {data}: {e}", file=sys.stderr)
        return 1
    cluster.write_private(data / "kubeconfig", files.kubeconfig("admin").read_text())
    return files, binaries, disabled


async def up(args: argparse.Namespace, files: cluster.ClusterFiles, binaries: dict[str, str], disabled: set[str]) -> int:
    data = files.data
    etcd_url = f"http://127.0.0.1:{args.etcd_port}"
    peer = args.etcd_port + 1 if args.etcd_port != 2379 else 2380
    nats_url = f"nats://127.0.0.1:{args.nats_port}"
    api_url = f"https://127.0.0.1:{args.api_port}"
    kubeconfig = data / "kubeconfig"
    py = [sys.executable, "-m", "services.cli"]
    children: list[Child] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        etcd = Child("etcd", [binaries["etcd"], "--name", "kubenats", "--data-dir", str(data / "etcd"),
                              "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                              "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-cluster", f"kubenats=http://127.0.0.1:{peer}", "--log-level", "warn"])
        nats = Child("nats", [binaries["nats-server"], "-c", str(data / "nats.conf")])
        for c, port in ((etcd, args.etcd_port), (nats, args.nats_port)):
            await c.start()
            children.append(c)
            await wait_port(port, c)
        api = Child("apiserver", [*py, "apiserver", "--etcd-servers", etcd_url, "--nats-url", nats_url,
                                  *cluster.flags(files, "apiserver"), "--data-dir", str(data),
                                  "--bind-address", "127.0.0.1", "--port", str(args.api_port),
                                  "--service-cluster-ip-range", args.service_cluster_ip_range])
        await api.start()
        children.append(api)
        await wait_ready(api_url, api, files.pki.ca.cert)
        common = ["--nats-url", nats_url]
        plan = {
            "scheduler": [*common, *cluster.flags(files, "scheduler")],
            "controllers": [*common, *cluster.flags(files, "controllers")],
            "kubelet": [*common, *cluster.flags(files, "kubelet", args.node_name),
                        "--node-name", args.node_name, "--runtime", args.runtime,
                        "--pod-manifest-path", str(data / "manifests"), "--root-dir", str(data / "kubelet"),
                        "--pod-infra-container-image", args.pause_image],
            "proxy": [*common, *cluster.flags(files, "proxy"), "--hostname-override", args.node_name,
                      "--service-cluster-ip-range", args.service_cluster_ip_range],
        }
        for name, extra in plan.items():
            if name in disabled:
                continue
            if not component_available(name):
                print(f"[up] {name} is not built in this version; skipping", flush=True)
                continue
            c = Child(name, [*py, name, *extra])
            await c.start()
            children.append(c)
        print(f"[up] cluster is up: kubectl --kubeconfig {kubeconfig} get nodes", flush=True)
        waiters = [asyncio.create_task(c.proc.wait()) for c in children if c.proc is not None]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            dead = [c.name for c in children if c.proc is not None and c.proc.returncode is not None]
            print(f"[up] {', '.join(dead)} exited; stopping the cluster", flush=True)
            return_code = 1
        else:
            return_code = 0
        stopper.cancel()
        for w in waiters:
            w.cancel()
        return return_code
    except RuntimeError as e:
        print(f"kubenats up: {e}", file=sys.stderr)
        return 1
    finally:
        for c in reversed(children):
            await c.stop()
        print("[up] stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    prepared = prepare(args)
    if isinstance(prepared, int):
        return prepared
    return asyncio.run(up(args, *prepared))

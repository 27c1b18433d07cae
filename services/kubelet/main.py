"""`kubenats kubelet`: flags to one kubelet on Docker, or to many hollow kubelets in one process.

Why this exists: `services/cli.py` runs each component through `add_arguments` / `run`. This
module turns upstream-named flags into a `KubeletConfig`, builds the runtime (`DockerRuntime`, or
`HollowRuntime` for `--runtime hollow`), and runs one `Kubelet` per node. With `--hollow-nodes N`
one process hosts N hollow nodes `<node-name>-<i>` that share one NATS connection, one API client,
one status manager and one Node informer, with their lease renewals spread evenly over the
interval. The kubelet starts even when neither the API server nor NATS answers (static pods run
regardless); NATS is connected in the background and the pod informers start once it is up.

A big fleet is split over several processes (kubemark runs one hollow node per pod; one Python
process is one event loop on one core, and a thousand busy nodes in one renewed their leases
minutes late): each runs `--hollow-nodes N --hollow-first-index K`,
that is nodes `<node-name>-<K>` .. `<node-name>-<K+N-1>` with InternalIPs `hollow_ip(K+i)`, and
takes pod IPs from its own `--hollow-pod-cidr` (a disjoint slice of 127.64.0.0/10 per process: the
pools live in each process, so only disjoint ranges keep pod IPs unique across processes). Lease
renewals are spread within each process and the processes interleave (`lease_offsets`). Any
`--hollow-first-index` makes a fleet process, even of one node: names `<node-name>-<K>`, NATS user
`kubelet-hollow`, no logs/exec or healthz server (fleet processes would fight over the ports).

The logs/exec server (`services/kubelet/server.py`) runs for a single node, on HTTPS: the serving
certificate is `--tls-cert-file`/`--tls-private-key-file`, else a self-signed one kept in
`<root-dir>/pki/` (a warning says so); callers need a client certificate signed by
`--client-ca-file` whose CN is an `--authorized-client` (default the API server's
`kube-apiserver-kubelet-client`) or whose groups include `system:masters`. Without
`--client-ca-file` every request is refused. `--healthz-port` (10248, loopback, plain HTTP) says
whether the process runs, without credentials.

The API server and NATS are reached with this kubelet's own identity (`shared.connect`): the
kubeconfig's client certificate, and NATS user `kubelet-<node>` (a hollow fleet of several nodes:
`kubelet-hollow`) unless `--nats-user` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import re
import socket
import ssl
from pathlib import Path
from typing import Any

from services.kubelet.apiclient import clients
from services.kubelet.config import DEFAULT_PAUSE_IMAGE, KubeletConfig
from services.kubelet.hollow import SHARED_POD_CIDR, HollowRuntime, shared_pool
from services.kubelet.kubelet import Kubelet
from services.kubelet.runtime_types import ContainerRuntime
from services.kubelet.server import DEFAULT_AUTHORIZED_CLIENTS, KubeletServer, ServerTLS, serve_healthz
from services.kubelet.status import StatusManager
from shared import bus as busmod
from shared import connect, pki
from shared.api.resources import BY_PLURAL
from shared.informer import Informer
from shared.log import event
from shared.netinfo import primary_ipv4
from shared.recorder import EventRecorder
from shared.runner import run_component

log = logging.getLogger("kubenats.kubelet.main")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration ("10s", "1m30s", "500ms") or plain seconds."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return total


def labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    connect.add_arguments(p, nats_user_default="")  # "": kubelet-<node>, or kubelet-hollow for a fleet
    p.add_argument("--node-name", default="", help="default: the hostname, lowercased")
    p.add_argument("--hostname-override", default="", help="alias of --node-name")
    p.add_argument("--node-ip", default="", help="InternalIP (default: the primary IPv4; hollow: loopback)")
    p.add_argument("--node-labels", type=labels, default={})
    p.add_argument("--runtime", choices=["docker", "hollow"], default="docker")
    p.add_argument("--pod-manifest-path", default="", help="folder of static pod manifests")
    p.add_argument("--root-dir", default="/var/lib/kubenats/kubelet")
    p.add_argument("--pod-infra-container-image", default=DEFAULT_PAUSE_IMAGE)
    p.add_argument("--address", default="0.0.0.0", help="bind address of the kubelet server")
    p.add_argument("--port", type=int, default=10250)
    p.add_argument("--tls-cert-file", default="",
                   help="serving certificate of the kubelet server (default: self-signed, in <root-dir>/pki)")
    p.add_argument("--tls-private-key-file", default="", help="key of --tls-cert-file")
    p.add_argument("--client-ca-file", default="",
                   help="CA of the client certificates the kubelet server accepts (without it: every request 401)")
    p.add_argument("--authorized-client", action="append", default=None, metavar="CN[,CN...]",
                   help="client-certificate CN allowed to use logs and exec (repeatable; default "
                        f"{','.join(DEFAULT_AUTHORIZED_CLIENTS)}); certificates of group system:masters always are")
    p.add_argument("--healthz-port", type=int, default=10248, help="plain-HTTP /healthz port (0: off)")
    p.add_argument("--healthz-bind-address", default="127.0.0.1")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--hollow-nodes", type=int, default=1, help="hollow nodes in this process (<node-name>-<i>)")
    p.add_argument("--hollow-first-index", type=int, default=None, metavar="K",
                   help="index of this process's first hollow node (default 0): a fleet split over processes runs "
                        "<node-name>-<K> .. <node-name>-<K+N-1> here; given at all, this process is a fleet member")
    p.add_argument("--hollow-pod-cidr", default=SHARED_POD_CIDR,
                   help="loopback range this process's hollow nodes take pod IPs from; processes of one fleet "
                        "need disjoint ranges (default %(default)s)")
    p.add_argument("--hollow-node-cpu", default="8")
    p.add_argument("--hollow-node-memory", default="32Gi")
    p.add_argument("--node-lease-renew-interval", type=duration, default=10.0)
    p.add_argument("--node-lease-duration-seconds", type=int, default=40)
    p.add_argument("--node-status-update-frequency", type=duration, default=10.0)
    p.add_argument("--node-status-report-frequency", type=duration, default=60.0)
    p.add_argument("--sync-frequency", type=duration, default=60.0)
    p.add_argument("--file-check-frequency", type=duration, default=2.0)
    p.add_argument("--pleg-relist-period", type=duration, default=1.0)
    p.add_argument("--housekeeping-interval", type=duration, default=2.0)
    p.add_argument("--pod-resync-period", type=duration, default=1800.0,
                   help="safety-net relist of the pod and node informers (NATS gaps relist at once)")
    p.add_argument("--crash-loop-backoff-base", type=duration, default=10.0)
    p.add_argument("--crash-loop-backoff-max", type=duration, default=300.0)
    p.add_argument("--image-pull-backoff-base", type=duration, default=10.0)
    p.add_argument("--image-pull-backoff-max", type=duration, default=300.0)
    p.add_argument("--api-retry-max", type=duration, default=10.0,
                   help="cap of the back-off between API retries while the API server is away")
    p.add_argument("--log-level", default="INFO")


def hollow_ip(index: int) -> str:
    """A loopback InternalIP per hollow node: 127.1.x.y (index 0 -> 127.1.0.1)."""
    n = index + 1
    return f"127.1.{(n >> 8) & 255}.{n & 255}"


def is_fleet(args: argparse.Namespace) -> bool:
    """Hollow nodes named `<node-name>-<i>`: several in this process, or any `--hollow-first-index`."""
    return args.runtime == "hollow" and (args.hollow_nodes > 1 or args.hollow_first_index is not None)


def _van_der_corput(j: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8, ...: the j-th point of a sequence that fills [0, 1) evenly at every length."""
    out, scale = 0.0, 0.5
    while j:
        out += scale * (j & 1)
        j >>= 1
        scale /= 2
    return out


def lease_offsets(first: int, count: int, interval: float) -> list[float]:
    """Delays before the first lease renewal of nodes `first` .. `first+count-1`.

    Within a process the nodes are spread evenly over the interval (each event loop renews at a
    steady rate), and process j (= first // count, processes of about equal size) is shifted by
    the j-th van der Corput fraction of one slot, so the processes interleave: 4 processes fill
    the interval's 4 x count slots exactly. A single process (first 0) gets i / count, as always."""
    phase = _van_der_corput(first // max(1, count))
    return [interval * (i + phase) / count for i in range(count)]


def configs(args: argparse.Namespace) -> list[KubeletConfig]:
    base = (args.node_name or args.hostname_override or socket.gethostname()).lower()
    hollow = args.runtime == "hollow"
    fleet = is_fleet(args)
    count = max(1, args.hollow_nodes) if hollow else 1
    first = (args.hollow_first_index or 0) if fleet else 0
    offsets = lease_offsets(first, count, args.node_lease_renew_interval)
    out = []
    for i in range(count):
        name = f"{base}-{first + i}" if fleet else base
        root = Path(args.root_dir) / name if fleet else Path(args.root_dir)
        out.append(KubeletConfig(
            node_name=name, root_dir=root, pause_image=args.pod_infra_container_image,
            pod_manifest_path="" if fleet else args.pod_manifest_path,
            node_ip=hollow_ip(first + i) if fleet else args.node_ip, port=args.port, hollow=hollow,
            hollow_pod_cidr=args.hollow_pod_cidr if hollow else "",
            cpu=args.hollow_node_cpu if hollow else "", memory=args.hollow_node_memory if hollow else "",
            max_pods=args.max_pods, node_labels=dict(args.node_labels),
            crash_backoff_base=args.crash_loop_backoff_base, crash_backoff_max=args.crash_loop_backoff_max,
            image_backoff_base=args.image_pull_backoff_base, image_backoff_max=args.image_pull_backoff_max,
            pleg_period=args.pleg_relist_period, sync_frequency=args.sync_frequency,
            housekeeping_period=args.housekeeping_interval, file_check_frequency=args.file_check_frequency,
            pod_resync_period=args.pod_resync_period, node_lease_renew_interval=args.node_lease_renew_interval,
            node_lease_duration=args.node_lease_duration_seconds,
            node_lease_offset=offsets[i],
            node_status_update_frequency=args.node_status_update_frequency,
            node_status_report_frequency=args.node_status_report_frequency, api_retry_max=args.api_retry_max,
        ))
    return out


def make_runtime(cfg: KubeletConfig) -> ContainerRuntime:
    if cfg.hollow:
        return HollowRuntime(node_name=cfg.node_name, images=[cfg.pause_image],
                             shared_pod_cidr=cfg.hollow_pod_cidr or SHARED_POD_CIDR)
    from services.kubelet.runtime import DockerRuntime

    return DockerRuntime(node_name=cfg.node_name)


class BusConnector:
    """One NATS connection, made in the background and retried until NATS answers."""

    def __init__(self, url: str, name: str, options: busmod.BusOptions | None = None) -> None:
        self.url = url
        self.name = name
        self.options = options
        self._task: asyncio.Task[busmod.Bus] | None = None

    async def _connect(self) -> busmod.Bus:
        delay = 0.5
        while True:
            bus = busmod.Bus(self.url, self.name, self.options)
            try:
                await bus.connect(timeout=3.0)
                event(log, "nats_connected", url=self.url, user=self.options.user if self.options else None)
                return bus
            except ConnectionError as e:
                event(log, "nats_unavailable", logging.WARNING, url=self.url, error=str(e), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def get(self) -> busmod.Bus:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect())
        return await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            return
        with contextlib.suppress(Exception):
            await self._task.result().close()


def authorized_clients(values: list[str] | None) -> frozenset[str]:
    """The CNs of `--authorized-client` (repeatable, each a comma-separated list)."""
    names = [n.strip() for v in (values or DEFAULT_AUTHORIZED_CLIENTS) for n in v.split(",")]
    return frozenset(n for n in names if n)


def self_signed_serving_cert(cfg: KubeletConfig) -> pki.CertPair:
    """`<root-dir>/pki/kubelet.crt` + `.key`, signed by a CA of this kubelet's own in the same
    folder (kept across restarts): what a kubelet without `--tls-cert-file` serves."""
    folder = cfg.root_dir / "pki"
    ca = pki.ensure_ca(folder, f"kubelet-ca@{cfg.node_name}")
    ips = [cfg.node_ip or ("" if cfg.hollow else primary_ipv4()), "127.0.0.1"]
    return pki.ensure_cert(folder, ca, "kubelet", cn=cfg.node_name, server=True,
                           dns=[cfg.node_name, socket.gethostname().lower(), "localhost"], ips=[i for i in ips if i])


def server_tls(args: argparse.Namespace, cfg: KubeletConfig) -> ServerTLS:
    """The kubelet server's TLS settings from the flags; ValueError (one line) when unusable."""
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise ValueError("--tls-cert-file and --tls-private-key-file must be given together")
    if args.tls_cert_file:
        cert, key = args.tls_cert_file, args.tls_private_key_file
    else:
        try:
            pair = self_signed_serving_cert(cfg)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot create a serving certificate in {cfg.root_dir / 'pki'}: {e}") from None
        cert, key = str(pair.cert), str(pair.key)
    if args.client_ca_file and not Path(args.client_ca_file).is_file():
        raise ValueError(f"--client-ca-file {args.client_ca_file} does not exist")
    tls = ServerTLS(cert, key, args.client_ca_file or None, authorized_clients(args.authorized_client))
    try:
        tls.context()
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot use the kubelet server's TLS files (cert={cert}, key={key}, "
                         f"client CA={args.client_ca_file or None}): {e}") from None
    return tls


def warn_insecure_defaults(args: argparse.Namespace, tls: ServerTLS) -> None:
    """Say what the kubelet server's defaults mean (after logging is set up)."""
    if not args.tls_cert_file:
        event(log, "kubelet_self_signed_certificate", logging.WARNING, cert=tls.cert_file,
              hint="pass --tls-cert-file/--tls-private-key-file signed by the cluster CA, "
                   "so the API server can verify this kubelet")
    if tls.client_ca_file is None:
        event(log, "kubelet_server_refuses_all", logging.WARNING,
              reason="no --client-ca-file: every logs/exec request is answered 401")


async def start_server(runtime: ContainerRuntime, cfg: KubeletConfig, bind: str,
                       tls: ServerTLS | None = None) -> KubeletServer:
    """The logs/exec server of one node (HTTPS when `tls`)."""
    server = KubeletServer(runtime, cfg.node_name, bind, cfg.port, tls=tls)
    await server.start()
    event(log, "kubelet_server_started", address=bind, port=server.port, https=tls is not None)
    return server


async def run_fleet(cfgs: list[KubeletConfig], server: str, client_kwargs: dict[str, Any], nats_url: str,
                    bind: str = "0.0.0.0", *, bus_options: busmod.BusOptions | None = None,
                    tls: ServerTLS | None = None, healthz: tuple[str, int] | None = None,
                    fleet: bool | None = None) -> None:
    """Run the kubelets of `cfgs` until cancelled, sharing the API client and NATS connection.

    A single node (not `fleet`; default: one config) also serves logs/exec on `bind`:`cfg.port`
    (HTTPS when `tls`) and, with `healthz` (address, port), the plain-HTTP /healthz; a fleet process
    serves neither, and shares one Node informer between its nodes."""
    client, heartbeat = clients(server, cfgs[0].node_name, nodes=len(cfgs), **client_kwargs)
    connector = BusConnector(nats_url, f"kubenats-kubelet-{cfgs[0].node_name}", bus_options)
    status = StatusManager(client, workers=min(32, 4 * len(cfgs)), retry_max=cfgs[0].api_retry_max)
    fleet = len(cfgs) > 1 if fleet is None else fleet
    runtimes = [make_runtime(cfg) for cfg in cfgs]
    http_server: KubeletServer | None = None
    healthz_server: asyncio.Server | None = None
    if not fleet:
        try:
            http_server = await start_server(runtimes[0], cfgs[0], bind, tls)
        except OSError as e:  # e.g. the port is taken: pods matter more than logs/exec
            event(log, "kubelet_server_failed", logging.ERROR, address=bind, port=cfgs[0].port, error=str(e))
            # never advertise a port another process owns: logs/exec would reach the wrong kubelet
            cfgs = [dataclasses.replace(cfgs[0], port=0)]
        if http_server is not None and http_server.port != cfgs[0].port:
            cfgs = [dataclasses.replace(cfgs[0], port=http_server.port)]  # --port 0: report the port we got
        if healthz is not None and healthz[1] > 0:
            try:
                healthz_server = await serve_healthz(*healthz)
            except OSError as e:  # another kubelet on this host has it: not worth stopping for
                event(log, "kubelet_healthz_failed", logging.WARNING, address=healthz[0], port=healthz[1], error=str(e))
    kubelets = [Kubelet(cfg, rt, client=client, status=status, heartbeat_client=heartbeat,
                        recorder=EventRecorder(client, "kubelet", cfg.node_name), node_informer=not fleet)
                for cfg, rt in zip(cfgs, runtimes, strict=True)]
    # a fleet starts gradually (about 100 nodes a second), so registrations do not arrive as one burst
    spread = len(cfgs) / 100.0 if fleet else 0.0

    async def run_one(i: int, k: Kubelet) -> None:
        await asyncio.sleep(spread * i / len(cfgs))
        await k.run(connector.get)

    node_informer: Informer | None = None

    async def shared_node_informer() -> None:
        nonlocal node_informer
        agents = {k.cfg.node_name: k.node for k in kubelets if k.node is not None}
        bus = await connector.get()
        inf = Informer(bus, client, BY_PLURAL[("", "nodes")], label_selector="kubenats.io/hollow=true",
                       subject="kube.events.core.nodes._.*", resync_period=cfgs[0].pod_resync_period)

        def changed(obj: dict[str, Any], gone: bool) -> None:
            agent = agents.get(str((obj.get("metadata") or {}).get("name")))
            if agent is not None:
                agent.node_changed(None if gone else obj)

        inf.add_handler(lambda o: changed(o, False), lambda _o, n: changed(n, False), lambda o: changed(o, True))
        node_informer = inf
        await inf.start()
        await asyncio.Event().wait()

    lag = [0.0]

    async def loop_lag() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.25)
            lag[0] = max(lag[0], loop.time() - t - 0.25)

    def log_fleet_stats(final: bool = False) -> None:
        agents = [k.node for k in kubelets if k.node is not None]
        event(log, "fleet_stats", nodes=len(agents), renewals=sum(a.renewals for a in agents),
              renew_failures=sum(a.renew_failures for a in agents),
              late_renewals=sum(a.late_renewals for a in agents),
              max_renew_gap_s=round(max((a.max_renew_gap for a in agents), default=0.0), 2),
              status_posts=sum(a.status_posts for a in agents), status_writes=status.writes,
              pods=sum(len(k.pods) for k in kubelets), max_loop_lag_s=round(lag[0], 3),
              pleg_lists=sum(k.cache.lists for k in kubelets), pleg_reuses=sum(k.cache.reuses for k in kubelets),
              final=final)
        lag[0] = 0.0

    async def fleet_stats() -> None:
        """One log line a minute about the fleet's heartbeats and event-loop lag (and one at the end)."""
        while True:
            await asyncio.sleep(60)
            log_fleet_stats()

    status.start()
    try:
        async with asyncio.TaskGroup() as tg:
            for i, k in enumerate(kubelets):
                tg.create_task(run_one(i, k), name=f"kubelet {k.cfg.node_name}")
            if fleet:
                tg.create_task(shared_node_informer(), name="hollow node informer")
                tg.create_task(fleet_stats(), name="fleet stats")
                tg.create_task(loop_lag(), name="loop lag")
    finally:
        if fleet:
            log_fleet_stats(final=True)
        if healthz_server is not None:
            healthz_server.close()
        if http_server is not None:
            with contextlib.suppress(Exception):
                await http_server.stop()
        if node_informer is not None:
            await node_informer.stop()
        await status.stop()
        await connector.close()
        await client.close()
        await heartbeat.close()
        for k in kubelets:
            close = getattr(k.runtime, "close", None)
            if close is not None:
                close()


def nats_user(args: argparse.Namespace, cfgs: list[KubeletConfig]) -> str:
    """--nats-user, else this kubelet's own user: kubelet-<node>, or kubelet-hollow for a fleet."""
    if args.nats_user:
        return str(args.nats_user)
    return "kubelet-hollow" if len(cfgs) > 1 or is_fleet(args) else f"kubelet-{cfgs[0].node_name}"


_RESERVED_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/15")  # 127.0.0.1 and the hollow node IPs 127.1.x.y


def check_hollow_flags(args: argparse.Namespace) -> None:
    """ValueError (one line) when the hollow fleet flags cannot give unique node and pod IPs."""
    if args.runtime != "hollow":
        return
    first, count = args.hollow_first_index or 0, max(1, args.hollow_nodes)
    if first < 0:
        raise ValueError(f"--hollow-first-index must be >= 0, not {first}")
    if is_fleet(args) and first + count > 65535:  # hollow_ip() has 16 bits
        raise ValueError(f"hollow nodes {first}..{first + count - 1}: at most 65,535 per fleet (node IPs 127.1.x.y)")
    shared_pool(args.hollow_pod_cidr)  # ValueError unless a loopback network
    if ipaddress.IPv4Network(args.hollow_pod_cidr).overlaps(_RESERVED_LOOPBACK):
        raise ValueError(f"--hollow-pod-cidr {args.hollow_pod_cidr} overlaps {_RESERVED_LOOPBACK} "
                         "(localhost and the hollow nodes' InternalIPs)")


def run(args: argparse.Namespace) -> int:
    try:
        check_hollow_flags(args)
    except ValueError as e:
        return connect.fail("kubelet", e)
    cfgs = configs(args)
    fleet = is_fleet(args)
    args.nats_user = nats_user(args, cfgs)
    try:
        api = connect.client_config(args)
        bus_options = connect.bus_options(args)
        tls = None if fleet else server_tls(args, cfgs[0])
    except ValueError as e:  # connect.ConnectError is one
        return connect.fail("kubelet", e)

    async def main() -> None:
        if tls is not None:
            warn_insecure_defaults(args, tls)
        await run_fleet(cfgs, api.server, connect.client_kwargs(api), args.nats_url, args.address,
                        bus_options=bus_options, tls=tls, healthz=(args.healthz_bind_address, args.healthz_port),
                        fleet=fleet)

    return run_component("kubelet", main, args.log_level)

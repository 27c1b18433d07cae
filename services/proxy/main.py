"""`kubenats proxy`: programs Services into kernel NAT rules on this node.

Why this exists: it is the proxy's process — flags, informers on Services, EndpointSlices and
Endpoints (NATS events plus relists, never HTTP watches), the bounded-frequency sync loop and the
`/healthz` endpoint. Each sync rebuilds the complete rule set from the informer caches
(`services.proxy.proxier`) and hands the difference to the kernel (`services.proxy.dataplane`)
as one atomic `nft -f` transaction.

Sync policy, as kube-proxy's BoundedFrequencyRunner: after a change, at most once per
`--min-sync-period` (1 s); without changes, every `--sync-period` (30 s) anyway. A sync normally
applies only what changed since the last one (at 1,000 Services x 10 endpoints a whole-table load
costs nft about 2.5 s of CPU, one changed Service about 0.2 s); the first sync, a sync after an
error and one every `--full-sync-period` (5 min) replace the whole table, so rules changed behind
our back are repaired. Before anything is programmed, the whole service range is routed `local` on this
host, so a service IP can never be routed off the machine. Stopping the proxy leaves the rules in
place (traffic keeps flowing across a restart); `--cleanup` removes the table, the route and the
iptables chains of the fallback mode, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson

from shared import connect, healthz
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from shared.informer import Informer
from shared.log import event
from shared.runner import run_component

from . import dataplane, proxier

log = logging.getLogger("kubenats.proxy")

SERVICES = BY_PLURAL[("", "services")]
ENDPOINTSLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
ENDPOINTS = BY_PLURAL[("", "endpoints")]


def duration(text: str) -> float:
    """`1s`, `500ms`, `2m` or plain seconds."""
    t = text.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * mult
    try:
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}") from None


def cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    connect.add_arguments(p, nats_user_default="proxy")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the hostname)")
    p.add_argument("--service-cluster-ip-range", type=cidr, default="10.0.0.0/16",
                   help="the service range: routed `local` on this host and refused unless a rule serves it")
    p.add_argument("--cluster-cidr", type=lambda s: cidr(s) if s else "", default="",
                   help="the pod range; traffic to a cluster IP from outside it is masqueraded")
    p.add_argument("--nodeport-addresses", default="primary",
                   help="`primary` (the node's primary IPv4 address) or comma-separated CIDRs: the local "
                        "addresses in them serve NodePorts. 127.0.0.0/8 never does (no route_localnet)")
    p.add_argument("--proxy-mode", choices=("nftables", "iptables"), default="nftables")
    p.add_argument("--masquerade-all", action="store_true", help="SNAT all traffic sent to cluster IPs")
    p.add_argument("--hairpin-bridges", default="docker0",
                   help="bridges whose ports get hairpin mode, so a pod can reach itself through its Service")
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    p.add_argument("--min-sync-period", type=duration, default=1.0)
    p.add_argument("--sync-period", type=duration, default=30.0)
    p.add_argument("--full-sync-period", type=duration, default=300.0,
                   help="how often a sync replaces the whole table instead of applying only the changes")
    p.add_argument("--nftables-table", default="kubenats", help=argparse.SUPPRESS)
    p.add_argument("--cleanup", action="store_true", help="remove everything the proxy installed, then exit")
    p.add_argument("--log-level", default="INFO")


def node_ips(spec: str) -> list[str]:
    """The addresses that serve NodePorts."""
    spec = spec.strip()
    if spec in ("", "primary"):
        ip = dataplane.primary_ipv4()
        return [ip] if ip and not ip.startswith("127.") else []
    nets = [ipaddress.ip_network(c.strip(), strict=False) for c in spec.split(",") if c.strip()]
    out = []
    for ip in dataplane.local_ipv4_addresses():
        addr = ipaddress.ip_address(ip)
        if not addr.is_loopback and any(addr in n for n in nets):
            out.append(ip)
    return out


class Proxy:
    """The informers, the sync loop and the health state of one proxy process."""

    def __init__(self, args: argparse.Namespace, bus: Bus, client: ApiClient) -> None:
        self.args = args
        self.node = args.hostname_override or socket.gethostname()
        self.services = Informer(bus, client, SERVICES)
        self.slices = Informer(bus, client, ENDPOINTSLICES)
        self.endpoints = Informer(bus, client, ENDPOINTS)
        self._dirty = asyncio.Event()
        self._applied: proxier.RuleSet | None = None
        self._applied_iptables: str | None = None
        self._ports: list[proxier.ServicePort] = []
        self._last_sync_start = 0.0
        self._last_full = 0.0
        self._pending_since: float | None = None  # oldest change not yet synced
        self.last_synced: datetime | None = None
        self.syncs = 0
        self.sync_failures = 0
        self._apply_s = 0.0  # time in nft / iptables-restore during the current sync

    def _changed(self, *_objs: Any) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._dirty.set()

    def config(self) -> proxier.ProxyConfig:
        return proxier.ProxyConfig(
            service_cidr=self.args.service_cluster_ip_range, table=self.args.nftables_table, node_name=self.node,
            node_ips=tuple(node_ips(self.args.nodeport_addresses)), cluster_cidr=self.args.cluster_cidr,
            masquerade_all=self.args.masquerade_all)

    # ---- health ----------------------------------------------------------------------------
    def healthy(self) -> bool:
        if self.last_synced is None:
            return False
        pending = self._pending_since
        return pending is None or time.monotonic() - pending < max(2 * self.args.sync_period, 60.0)

    def health_body(self) -> bytes:
        return orjson.dumps({
            "lastUpdated": self.last_synced.isoformat() if self.last_synced else "",
            "currentTime": datetime.now(UTC).isoformat(), "nodeName": self.node, "syncs": self.syncs,
            "syncFailures": self.sync_failures, "mode": self.args.proxy_mode})

    # ---- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        for inf in (self.services, self.slices, self.endpoints):
            inf.add_handler(self._changed, self._changed, self._changed)
            await inf.start()
        for inf in (self.services, self.slices, self.endpoints):
            await inf.wait_synced()
        event(log, "proxy_informers_synced", node=self.node, services=len(self.services),
              endpointslices=len(self.slices), mode=self.args.proxy_mode)
        retry = 1.0
        while True:
            full = time.monotonic() - self._last_full >= self.args.full_sync_period or self._applied is None
            try:
                await self.sync(full=full)
                retry = 1.0
            except Exception as e:
                self.sync_failures += 1
                self._applied = None  # next attempt rebuilds the whole table
                self._applied_iptables = None
                event(log, "sync_failed", logging.ERROR, error=f"{type(e).__name__}: {e}", retry_in_s=retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 30.0)
                continue
            since = time.monotonic() - self._last_sync_start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), max(0.0, self.args.sync_period - since))
            wait = self.args.min_sync_period - (time.monotonic() - self._last_sync_start)
            if wait > 0:
                await asyncio.sleep(wait)

    async def stop(self) -> None:
        for inf in (self.services, self.slices, self.endpoints):
            await inf.stop()

    async def sync(self, full: bool = False) -> None:
        """Rebuild the rule set from the caches and apply it (only the changes unless `full`)."""
        started = time.monotonic()
        self._last_sync_start = started
        self._dirty.clear()
        pending = self._pending_since
        self._pending_since = None
        try:
            # the service range must be local before any rule can send traffic to it
            route_added = await asyncio.to_thread(dataplane.ensure_local_route, self.args.service_cluster_ip_range)
            cfg = await asyncio.to_thread(self.config)
            self._apply_s = 0.0
            built = time.monotonic()
            ports = proxier.service_ports(self.services.list(), self.slices.list(), self.endpoints.list())
            if self.args.proxy_mode == "iptables":
                text_size, rules, mode = await self._apply_iptables(ports, cfg, full)
            else:
                text_size, rules, mode = await self._apply_nftables(ports, cfg, full)
        except BaseException:
            if pending is not None and (self._pending_since is None or pending < self._pending_since):
                self._pending_since = pending
            raise
        flushes = proxier.conntrack_deletions(self._ports, ports, self.node)
        self._ports = ports
        failed = await dataplane.conntrack_delete(flushes)
        bridges = [b for b in self.args.hairpin_bridges.split(",") if b.strip()]
        hairpin = await asyncio.to_thread(dataplane.ensure_hairpin, [b.strip() for b in bridges])
        self.syncs += 1
        self.last_synced = datetime.now(UTC)
        if full:
            self._last_full = started
        event(log, "sync", mode=mode, service_ports=len(ports), endpoints=sum(len(p.endpoints) for p in ports),
              rules=rules, bytes=text_size,
              conntrack_flushes=len(flushes), conntrack_failed=failed, hairpin_ports=hairpin,
              route_added=route_added, node_ips=list(cfg.node_ips),
              rules_ms=round((time.monotonic() - built - self._apply_s) * 1000, 1) if rules else 0.0,
              apply_ms=round(self._apply_s * 1000, 1), duration_ms=round((time.monotonic() - started) * 1000, 1))

    async def _apply_nftables(self, ports: list[proxier.ServicePort], cfg: proxier.ProxyConfig,
                              full: bool) -> tuple[int, int, str]:
        rs = proxier.build(ports, cfg)
        if full or self._applied is None:
            contents = await dataplane.nft_table_contents(cfg.table)
            text = proxier.full_transaction(rs, contents.chains, contents.sets)
            mode = "full"
        else:
            text = proxier.diff_transaction(self._applied, rs)
            mode = "partial" if text else "unchanged"
        try:
            await self._timed(dataplane.nft_apply(text))
        except dataplane.DataplaneError:
            if mode == "full":
                raise
            # the kernel's table is not what we think (someone changed it): replace it whole
            contents = await dataplane.nft_table_contents(cfg.table)
            text = proxier.full_transaction(rs, contents.chains, contents.sets)
            mode = "full-after-error"
            await self._timed(dataplane.nft_apply(text))
        self._applied = rs
        return len(text), rs.rule_count(), mode

    async def _timed(self, step: Coroutine[Any, Any, None]) -> None:
        t = time.monotonic()
        try:
            await step
        finally:
            self._apply_s += time.monotonic() - t

    async def _apply_iptables(self, ports: list[proxier.ServicePort], cfg: proxier.ProxyConfig,
                              full: bool) -> tuple[int, int, str]:
        current = await dataplane.iptables_save("nat") + await dataplane.iptables_save("filter")
        text, rules = proxier.iptables_restore_text(ports, cfg, current)
        if not full and text == self._applied_iptables:
            return 0, rules, "unchanged"
        await self._timed(dataplane.iptables_restore(text))
        self._applied_iptables = text
        return len(text), rules, "full"


# ---- /healthz ---------------------------------------------------------------------------------
def _split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


async def serve_healthz(proxy: Proxy, bind: str) -> asyncio.Server:
    host, port = _split_hostport(bind)

    def answer(path: str) -> tuple[int, bytes, str] | None:
        if path not in ("/healthz", "/livez"):
            return None
        ok = proxy.healthy() if path == "/healthz" else True
        return (200 if ok else 503), proxy.health_body(), "application/json"
    return await healthz.serve(host, port, answer)


# ---- entry points -----------------------------------------------------------------------------
async def cleanup(args: argparse.Namespace) -> int:
    """Remove the nftables table, the iptables chains, and the service range route."""
    removed_table = await dataplane.nft_delete_table(args.nftables_table)
    removed_chains = 0
    for table in ("nat", "filter"):
        with contextlib.suppress(dataplane.DataplaneError, FileNotFoundError):
            current = await dataplane.iptables_save(table)
            text = proxier.iptables_cleanup_text(table, current)
            if text:
                await dataplane.iptables_restore(text)
                removed_chains += text.count("\n-X ")
    removed_route = await asyncio.to_thread(dataplane.remove_local_route, args.service_cluster_ip_range)
    event(log, "cleanup_done", table=args.nftables_table, removed_table=removed_table,
          removed_iptables_chains=removed_chains, removed_route=removed_route, cidr=args.service_cluster_ip_range)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cleanup:
        from shared.log import setup

        setup("proxy", args.log_level)
        return asyncio.run(cleanup(args))
    try:
        bus_options = connect.bus_options(args)
        client = connect.api_client(args, "kubenats-proxy")
    except connect.ConnectError as e:
        return connect.fail("proxy", e)

    async def main() -> None:
        bus = Bus(args.nats_url, f"kubenats-proxy-{args.hostname_override or socket.gethostname()}", bus_options)
        try:
            await bus.connect()
            proxy = Proxy(args, bus, client)
            server = await serve_healthz(proxy, args.healthz_bind_address)
            event(log, "proxy_started", node=proxy.node, mode=args.proxy_mode, healthz=args.healthz_bind_address,
                  service_cidr=args.service_cluster_ip_range)
            try:
                await proxy.run()
            finally:
                server.close()
                await proxy.stop()
        finally:
            await client.close()
            await bus.close()

    return run_component("proxy", main, args.log_level)

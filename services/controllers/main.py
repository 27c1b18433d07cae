"""`kubenats controllers`: the controller manager, kube-controller-manager's counterpart.

It builds one shared informer per resource the enabled controllers need, lets each controller
register its handlers and indexes, starts the informers and waits for their first list, then
runs each controller's work queue with its workers. `--controllers` takes Kubernetes' syntax
(`*` for all, `name` to enable, `-name` to disable, first match wins). On shutdown the queues
stop, the informers unsubscribe, the NATS connection drains and the HTTP client closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from collections.abc import Callable

from shared import connect
from shared.bus import Bus
from shared.client import ApiClient
from shared.informer import DEFAULT_RESYNC_PERIOD
from shared.log import event
from shared.runner import run_component
from shared.workqueue import run_workers

from .base import Controller, ControllerContext, SharedInformers
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .garbagecollector import GarbageCollector
from .job import JobController
from .namespace import NamespaceController
from .nodelifecycle import NodeLifecycleController
from .replicaset import ReplicaSetController

log = logging.getLogger("kubenats.controllers")

CONTROLLERS: dict[str, Callable[[ControllerContext], Controller]] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollector,
    "namespace": NamespaceController,
    "endpoint": EndpointsController,
    "endpointslice": EndpointSliceController,
    "nodelifecycle": NodeLifecycleController,
    "daemonset": DaemonSetController,
    "job": JobController,
}
DISABLED_BY_DEFAULT: frozenset[str] = frozenset()
# kube-controller-manager's per-controller concurrency flags and their defaults
WORKER_FLAGS = {"replicaset": ("concurrent_replicaset_syncs", 5), "deployment": ("concurrent_deployment_syncs", 5),
                "garbagecollector": ("concurrent_gc_syncs", 20), "namespace": ("concurrent_namespace_syncs", 10),
                "endpoint": ("concurrent_endpoint_syncs", 5), "endpointslice": ("concurrent_service_endpoint_syncs", 5),
                "daemonset": ("concurrent_daemonset_syncs", 2), "job": ("concurrent_job_syncs", 5)}
# Settings of single controllers, by kube-controller-manager's flag names (durations in seconds or
# with a unit, "40s"): (controller, attribute, flag, default, help).
CONTROLLER_FLAGS: list[tuple[str, str, str, float, str]] = [
    ("nodelifecycle", "monitor_period", "node-monitor-period", 5.0, "how often node health is checked"),
    ("nodelifecycle", "grace_period", "node-monitor-grace-period", 40.0,
     "how long a node may stay silent (no Lease renewal, no status) before it is marked Unknown"),
    ("nodelifecycle", "startup_grace_period", "node-startup-grace-period", 60.0,
     "how long a new node may take to post its first status"),
    ("nodelifecycle", "eviction_rate", "node-eviction-rate", 0.1, "nodes per second tainted for eviction, per zone"),
    ("nodelifecycle", "secondary_eviction_rate", "secondary-node-eviction-rate", 0.01,
     "nodes per second tainted in a large zone that is partially down"),
    ("nodelifecycle", "large_cluster_threshold", "large-cluster-size-threshold", 50,
     "zone size above which the secondary eviction rate applies (smaller zones stop evicting)"),
    ("nodelifecycle", "unhealthy_zone_threshold", "unhealthy-zone-threshold", 0.55,
     "fraction of not-ready nodes (at least 3) that makes a zone partially down"),
    ("endpointslice", "max_endpoints_per_slice", "max-endpoints-per-slice", 100, "endpoints per EndpointSlice"),
]


def enabled_controllers(spec: str | list[str]) -> list[str]:
    """Resolve `--controllers` as IsControllerEnabled does; unknown names are an error."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    for item in items:
        name = item[1:] if item.startswith("-") else item
        if name != "*" and name not in CONTROLLERS:
            raise ValueError(f"{name!r} is not in the list of known controllers: {', '.join(sorted(CONTROLLERS))}")
    out = []
    for name in CONTROLLERS:
        choice: bool | None = None
        star = False
        for item in items:
            if item == name:
                choice = True
                break
            if item == f"-{name}":
                choice = False
                break
            star = star or item == "*"
        if choice is None:
            choice = star and name not in DISABLED_BY_DEFAULT
        if choice:
            out.append(name)
    return out


class ControllerManager:
    """The enabled controllers over shared informers; usable in-process (tests) or from `run`."""

    def __init__(self, client: ApiClient, bus: Bus, controllers: list[str], workers: dict[str, int] | None = None,
                 default_workers: int = 5, resync_period: float = DEFAULT_RESYNC_PERIOD) -> None:
        self.client = client
        self.bus = bus
        self.informers = SharedInformers(bus, client, resync_period)
        self.ctx = ControllerContext(client, self.informers, dict(workers or {}), default_workers)
        self.controllers: dict[str, Controller] = {name: CONTROLLERS[name](self.ctx) for name in controllers}
        self._tasks: list[asyncio.Task[None]] = []

    def get(self, name: str) -> Controller:
        return self.controllers[name]

    async def start(self, sync_timeout: float | None = 60.0) -> None:
        await self.informers.start()
        await self.informers.wait_synced(sync_timeout)
        for name, c in self.controllers.items():
            workers = self.ctx.workers_for(name)
            self._tasks.append(asyncio.create_task(run_workers(c.queue, c.reconcile, workers), name=f"controller-{name}"))
            event(log, "controller_started", controller=name, workers=workers)

    async def stop(self) -> None:
        for c in self.controllers.values():
            c.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.informers.stop()
        await self.ctx.flush_events()

    async def wait(self) -> None:
        """Until a controller's worker loop ends (it only does on shutdown or a bug)."""
        await asyncio.gather(*self._tasks)


def add_arguments(p: argparse.ArgumentParser) -> None:
    connect.add_arguments(p, nats_user_default="controllers")
    p.add_argument("--controllers", default="*",
                   help=f"controllers to run: '*' for all, 'name' to enable, '-name' to disable "
                        f"(known: {', '.join(CONTROLLERS)})")
    p.add_argument("--concurrent-workers", type=int, default=0,
                   help="workers per controller (default: Kubernetes' per-controller defaults)")
    for flag, default in WORKER_FLAGS.values():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=int, default=0, help=f"default {default}")
    p.add_argument("--min-resync-period", type=float, default=DEFAULT_RESYNC_PERIOD,
                   help="seconds between the informers' safety-net relists (each +-10%%; a NATS gap or a resync "
                        "message relists at once)")
    for _name, _attr, flag, value, text in CONTROLLER_FLAGS:
        kind = int if isinstance(value, int) else duration if flag.endswith(("period", "grace-period")) else float
        p.add_argument("--" + flag, type=kind, default=value, help=f"{text} (default {value})")
    p.add_argument("--log-level", default="INFO")


def duration(text: str) -> float:
    """A flag duration: seconds, or a number with a unit as Go writes them ("500ms", "40s", "5m", "1h")."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for unit, factor in units:
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * factor
    return float(text)


def apply_controller_flags(manager: ControllerManager, args: argparse.Namespace) -> None:
    """Hand the CONTROLLER_FLAGS values to the running controllers."""
    for name, attr, flag, _value, _text in CONTROLLER_FLAGS:
        if name in manager.controllers:
            setattr(manager.controllers[name], attr, getattr(args, flag.replace("-", "_")))


def workers_from_args(args: argparse.Namespace) -> dict[str, int]:
    out = {}
    for name, (flag, default) in WORKER_FLAGS.items():
        out[name] = getattr(args, flag, 0) or args.concurrent_workers or default
    return out


def run(args: argparse.Namespace) -> int:
    try:
        names = enabled_controllers(args.controllers)
        bus_options = connect.bus_options(args)
        client = connect.api_client(args, "kubenats-controller-manager")
    except ValueError as e:  # connect.ConnectError is one
        return connect.fail("controllers", e)

    async def main() -> None:
        bus = Bus(args.nats_url, f"kubenats-controllers-{socket.gethostname()}-{os.getpid()}", bus_options)
        manager: ControllerManager | None = None
        try:
            await bus.connect()
            manager = ControllerManager(client, bus, names, workers_from_args(args),
                                        resync_period=args.min_resync_period)
            apply_controller_flags(manager, args)
            event(log, "controller_manager_starting", controllers=names, kubeconfig=args.kubeconfig,
                  master=args.master)
            await manager.start(sync_timeout=None)
            await manager.wait()
        finally:
            if manager is not None:
                await manager.stop()
            await bus.close()
            await client.close()

    return run_component("controllers", main, args.log_level)

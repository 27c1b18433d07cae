"""`kubenats scheduler`: command-line flags to a running scheduler replica.

Why this exists: ``services/cli.py`` runs each component through ``add_arguments`` / ``run``. This
module turns kube-scheduler's flags into a :class:`~services.scheduler.scheduler.Scheduler` plus,
with ``--leader-elect`` (the default, as in Kubernetes), a
:class:`~services.scheduler.leader.LeaderElector` that lets the replica schedule only while it
holds the ``kube-system/kube-scheduler`` Lease. Informers start at once either way, so a standby
replica has a warm cache when it takes over.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys

from services.scheduler.leader import (
    DEFAULT_LEASE_DURATION,
    DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD,
    LeaderElector,
    default_identity,
)
from services.scheduler.plugins import LEAST_ALLOCATED, MOST_ALLOCATED, default_profile
from services.scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler
from shared import connect
from shared.bus import Bus
from shared.recorder import EventRecorder
from shared.runner import run_component

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration ("15s", "1m30s", "500ms") or plain seconds, in seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return total


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def percentage(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    connect.add_arguments(p, nats_user_default="scheduler")
    p.add_argument("--leader-elect", type=boolean, nargs="?", const=True, default=True,
                   help="hold the kube-system/kube-scheduler Lease before scheduling (default true)")
    p.add_argument("--leader-elect-lease-duration", type=duration, default=DEFAULT_LEASE_DURATION)
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=DEFAULT_RENEW_DEADLINE)
    p.add_argument("--leader-elect-retry-period", type=duration, default=DEFAULT_RETRY_PERIOD)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--leader-elect-resource-name", default="kube-scheduler")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule pods whose spec.schedulerName is this")
    p.add_argument("--scoring-strategy", choices=[LEAST_ALLOCATED, MOST_ALLOCATED], default=LEAST_ALLOCATED,
                   help="NodeResourcesFit scoring strategy")
    p.add_argument("--percentage-of-nodes-to-score", type=percentage, default=0,
                   help="share of nodes to find feasible before scoring (0 = adaptive, as kube-scheduler)")
    p.add_argument("--bind-concurrency", type=int, default=8, help="binding calls in flight at most")
    p.add_argument("--log-level", default="INFO")


def _skip_missing_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` miss instantly when sniffio is not installed.

    httpcore imports sniffio inside every request and falls back to asyncio on ImportError; with
    the package absent each attempt walks sys.path, which profiling showed as ~12% of the
    scheduler's CPU at full binding rate. A ``None`` entry in sys.modules makes the import fail at
    once, leading to the same asyncio fallback. (Declaring sniffio as a dependency fixes it for
    every component.)
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def run(args: argparse.Namespace) -> int:
    if args.leader_elect and not (args.leader_elect_lease_duration > args.leader_elect_renew_deadline
                                  > args.leader_elect_retry_period * 1.2 > 0):
        print("kubenats scheduler: need --leader-elect-lease-duration > --leader-elect-renew-deadline > "
              "1.2 x --leader-elect-retry-period > 0", file=sys.stderr)
        return 2
    if args.bind_concurrency < 1:
        print("kubenats scheduler: --bind-concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        client = connect.api_client(args, "kubenats-scheduler")
        bus_options = connect.bus_options(args)
    except connect.ConnectError as e:
        return connect.fail("scheduler", e)
    identity = default_identity()
    _skip_missing_sniffio()

    async def main() -> None:
        bus = Bus(args.nats_url, f"kubenats-scheduler-{identity}", bus_options)
        try:
            await bus.connect()
            profile = default_profile(args.scoring_strategy, args.percentage_of_nodes_to_score)
            recorder = EventRecorder(client, DEFAULT_SCHEDULER_NAME, identity)
            sched = Scheduler(client, bus, profile=profile, scheduler_name=args.scheduler_name,
                              bind_concurrency=args.bind_concurrency, recorder=recorder, identity=identity)
            await sched.start()
            try:
                if not args.leader_elect:
                    await sched.run()
                    return
                elector = LeaderElector(client, namespace=args.leader_elect_resource_namespace,
                                        name=args.leader_elect_resource_name, identity=identity,
                                        lease_duration=args.leader_elect_lease_duration,
                                        renew_deadline=args.leader_elect_renew_deadline,
                                        retry_period=args.leader_elect_retry_period)
                await elector.run(sched.run)
            finally:
                await sched.stop()
        finally:
            await bus.close()
            await client.close()

    return run_component("scheduler", main, args.log_level)

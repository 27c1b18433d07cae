"""`kubenats events [RESOURCE[/NAMESPACE[/NAME]]]`: tail what the cluster is doing.

Subscribes to the event subjects and prints one readable line per change: time, type, kind,
namespace/name, resourceVersion and a short summary of what changed (`status.phase Pending ->
Running`), computed against the previous state of the same object seen in this session.
`--json` prints the raw messages; `--since 10m` replays from JetStream first.

It connects to NATS as user `admin` by default (`--nats-user`, `--nats-password-file`,
`--nats-ca-file`, see `shared.connect`). An event too large for NATS arrives `partial` (metadata
only); its object is then read through the API server of `--kubeconfig` / `--master`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shared import connect
from shared.api.resources import BY_KIND, by_name
from shared.bus import Bus, BusOptions, Message, token
from shared.client import ApiClient
from shared.errors import ApiError

IGNORED = ("metadata.resourceVersion", "metadata.managedFields", "metadata.generation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", default="", help="RESOURCE[/NAMESPACE[/NAME]], e.g. pods/default or deploy")
    # --nats-url "": from --data-dir's nats.conf, else nats://127.0.0.1:4222
    connect.add_arguments(p, nats_user_default="admin", nats_url_default="")
    p.add_argument("--data-dir", default=str(Path.home() / ".kubenats"))
    p.add_argument("--json", action="store_true", help="print raw messages")
    p.add_argument("--since", default="", help="replay stored events from this long ago first (30s, 10m, 2h)")


def subject_for(target: str) -> str:
    if not target:
        return "kube.events.>"
    parts = target.split("/")
    res = by_name(parts[0])
    if res is None:
        raise ValueError(f'the server doesn\'t have a resource type "{parts[0]}"')
    subject = f"kube.events.{token(res.group or 'core')}.{res.plural}"
    if len(parts) == 1:
        return subject + ".>"
    ns = parts[1] if res.namespaced else "_"
    if len(parts) == 2:
        return f"{subject}.{token(ns)}.>" if res.namespaced else f"{subject}._.{token(parts[1])}"
    return f"{subject}.{token(ns)}.{token(parts[2])}"


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not m:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 10m, 2h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) and "type" in x for x in obj):
        for x in obj:  # conditions: keyed by type
            out.update(flatten({k: v for k, v in x.items() if k not in ("lastProbeTime", "lastHeartbeatTime")},
                               f"{prefix}[{x['type']}]"))
    else:
        out[prefix] = obj
    return out


def short(v: Any) -> str:
    if v is None:
        return "<none>"
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def summarize(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 3) -> str:
    if old is None:
        return ""
    a, b = flatten(old), flatten(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(IGNORED) or a.get(key) == b.get(key):
            continue
        changes.append(f"{key} {short(a.get(key))} -> {short(b.get(key))}")
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


class Printer:
    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.last: dict[str, dict[str, Any]] = {}

    def line(self, msg: Message, data: dict[str, Any] | None = None) -> str:
        """The line for `msg`; `data`: its payload when already decoded (and completed)."""
        if self.raw:
            return orjson.dumps({"subject": msg.subject, "revision": msg.revision,
                                 "data": orjson.loads(msg.data)}).decode()
        if data is None:
            data = dict(orjson.loads(msg.data))
        obj = data.get("object") or {}
        meta = obj.get("metadata") or {}
        key = f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        summary = summarize(self.last.get(key), obj) if data.get("type") == "MODIFIED" else ""
        if data.get("type") == "DELETED":
            self.last.pop(key, None)
        else:
            self.last[key] = obj
        where = f"{meta['namespace']}/{meta.get('name', '')}" if meta.get("namespace") else meta.get("name", "")
        ts = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        text = f"{ts} {data.get('type', '?'):<8} {obj.get('kind', '?'):<12} {where} rv={msg.revision}"
        return text + (f"  {summary}" if summary else "")


def nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    conf = Path(args.data_dir).expanduser() / "nats.conf"
    if conf.exists():
        m = re.search(r'listen:\s*"?([\d.]+:\d+)', conf.read_text())
        if m:
            return f"nats://{m.group(1)}"
    return "nats://127.0.0.1:4222"


async def complete(client: ApiClient | None, data: dict[str, Any]) -> dict[str, Any]:
    """A `partial` event with its object read through the API (its current state), when it can be."""
    obj = data.get("object") or {}
    meta = obj.get("metadata") or {}
    if client is None or not data.get("partial") or data.get("type") == "DELETED" or not meta.get("name"):
        return data
    res = BY_KIND.get((str(obj.get("apiVersion", "")), str(obj.get("kind", ""))))
    if res is None:
        return data
    try:
        full = await client.get(res, str(meta.get("namespace") or ""), str(meta["name"]))
    except ApiError:
        return data  # gone since, or not allowed: the metadata is what there is
    return {**data, "object": full}


async def tail(url: str, subject: str, since: float | None, printer: Printer,
               options: BusOptions | None = None, client: ApiClient | None = None) -> None:
    bus = Bus(url, "kubenats-events", options)
    await bus.connect()

    async def show(msg: Message) -> None:
        data = None if printer.raw else await complete(client, dict(orjson.loads(msg.data)))
        print(printer.line(msg, data), flush=True)

    try:
        if since is not None:
            async for msg in bus.replay(subject, since, idle_s=None):
                await show(msg)
        else:
            await bus.subscribe(subject, show)
            await asyncio.Event().wait()
    finally:
        await bus.close()
        if client is not None:
            await client.close()


def run(args: argparse.Namespace) -> int:
    try:
        subject = subject_for(args.target)
        since = parse_duration(args.since) if args.since else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    data = Path(args.data_dir).expanduser()
    # a cluster made by `kubenats up` in --data-dir: its admin credentials, unless flags say otherwise
    if not args.nats_password_file and args.nats_user == "admin" and (data / "nats" / "users" / "admin").exists():
        args.nats_password_file = str(data / "nats" / "users" / "admin")
    if not args.kubeconfig and (data / "kubeconfig").exists():
        args.kubeconfig = str(data / "kubeconfig")
    try:
        options = connect.bus_options(args)
        client = connect.api_client(args, "kubenats-events")
    except connect.ConnectError as e:
        return connect.fail("events", e)
    url = nats_url(args)
    print(f"# tailing {subject} on {url} as {options.user or 'no user'}", file=sys.stderr, flush=True)
    try:
        asyncio.run(tail(url, subject, since, Printer(args.json), options, client))
    except KeyboardInterrupt:
        pass
    except ConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0

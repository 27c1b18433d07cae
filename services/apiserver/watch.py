"""Serves `?watch=true` from the NATS event stream.

One core NATS subscription to `kube.events.>` feeds every HTTP watcher of this apiserver, so a
thousand kubectl `get -w` sessions cost one subscription. A window of recent events per
resource lets a client resume from a resourceVersion; older than the window gets an ERROR event
with a 410 Expired Status, as the real API server does, and the client relists. When the
subscription may have missed messages (reconnect, slow consumer) the window restarts at the
current etcd revision and open watches are closed so their clients resume or relist.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared import bus as busmod
from shared import selectors
from shared.api.resources import BY_PLURAL, Resource
from shared.log import event

log = logging.getLogger("kubenats.watch")
WINDOW = 10000  # events per resource a watch can resume from (older: 410 Gone, relist)
MAX_BATCH = 256  # events per HTTP chunk when a watcher has a backlog


PARSED = 128  # events per resource kept parsed; older ones keep only their bytes (memory)


class Event:
    """One change in the window. Once the event is PARSED events old (`release`) its parsed object
    is dropped and its bytes are zlib-compressed (level 1: ~20 us for a pod, a third of the size);
    both come back on demand if a lagging or resuming watcher needs the event. At 30,000 pods a
    window of parsed dicts cost hundreds of MB, and the plain bytes of 20,000 events per resource
    still ~50 MB per resource in every apiserver worker."""

    __slots__ = ("_obj", "_raw", "_zipped", "name", "namespace", "revision", "type")

    def __init__(self, revision: int, type: str, obj: dict[str, Any] | None, raw: bytes,
                 namespace: str, name: str) -> None:
        self.revision = revision
        self.type = type
        self._obj = obj
        self._raw = raw
        self._zipped = False
        self.namespace = namespace
        self.name = name

    @property
    def raw(self) -> bytes:
        return zlib.decompress(self._raw) if self._zipped else self._raw

    @property
    def obj(self) -> dict[str, Any]:
        if self._obj is None:
            parsed = orjson.loads(self.raw).get("object")
            self._obj = parsed if isinstance(parsed, dict) else {}
        return self._obj

    def release(self) -> None:
        self._obj = None
        if not self._zipped:
            self._raw, self._zipped = zlib.compress(self._raw, 1), True


@dataclass(eq=False)
class Watcher:
    res: Resource
    namespace: str
    label: selectors.LabelSelector
    fields: selectors.FieldSelector | None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    sent: set[tuple[str, str]] = field(default_factory=set)
    track: bool = False

    def wants(self, ev: Event) -> str | None:
        """The event type to send for ev, or None to skip it."""
        if self.namespace and ev.namespace != self.namespace:
            return None
        key = (ev.namespace, ev.name)
        matches = self.label.matches(ev.obj.get("metadata", {}).get("labels")) and (
            self.fields is None or self.fields.matches(selectors.object_fields(self.res.plural, ev.obj))
        )
        filtering = not self.label.empty or self.fields is not None
        if not filtering:
            return ev.type
        if ev.type == "DELETED":
            if matches or key in self.sent:
                self.sent.discard(key)
                return "DELETED"
            return None
        if matches:
            if self.track and key not in self.sent:
                self.sent.add(key)
                return "ADDED"
            self.sent.add(key)
            return ev.type
        if key in self.sent:
            self.sent.discard(key)
            return "DELETED"
        return None


class Expired(Exception):
    pass


class WatchHub:
    def __init__(
        self,
        bus: busmod.Bus,
        current_revision: Callable[[], Awaitable[int]],
        fetch: Callable[[Resource, str, str], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self._bus = bus
        self._current_revision = current_revision
        self._fetch = fetch
        self._events: dict[tuple[str, str], deque[Event]] = {}
        self._floor: dict[tuple[str, str], int] = {}
        self._start = 0
        self._watchers: dict[tuple[str, str], set[Watcher]] = {}
        self.latest = 0
        self._sub: Any = None
        self._listeners: dict[tuple[str, str], list[Callable[[str, dict[str, Any]], None]]] = {}
        self._gap_listeners: list[Callable[[], Awaitable[None]]] = []

    def add_listener(self, res: Resource, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """Call fn(event type, object) for every event of one resource (in-process caches such as
        the authorizers'); fn must be quick and must not mutate the object."""
        self._listeners.setdefault((res.group, res.plural), []).append(fn)

    def add_gap_listener(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Called when events may have been missed: listeners should reload from storage."""
        self._gap_listeners.append(fn)

    async def start(self) -> None:
        self._sub = await self._bus.subscribe("kube.events.>", self._on_message, on_gap=self._on_gap)

        async def on_resync(_msg: busmod.Message) -> None:
            await self._on_gap()
        await self._bus.subscribe(busmod.RESYNC_SUBJECT, on_resync)
        await self._bus.flush()
        self._start = await self._current_revision()
        self.latest = self._start
        event(log, "watch_hub_started", revision=self._start)

    async def stop(self) -> None:
        for watchers in self._watchers.values():
            for w in watchers:
                w.queue.put_nowait(None)

    @property
    def watcher_count(self) -> int:
        return sum(len(v) for v in self._watchers.values())

    async def _on_gap(self) -> None:
        self._events.clear()
        self._floor.clear()
        self._start = await self._current_revision()
        event(log, "watch_hub_reset", revision=self._start, closed=self.watcher_count)
        for watchers in self._watchers.values():
            for w in watchers:
                w.queue.put_nowait(None)
        for fn in self._gap_listeners:
            try:
                await fn()
            except Exception as e:
                event(log, "watch_gap_listener_failed", logging.ERROR, error=str(e))

    async def _on_message(self, msg: busmod.Message) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 6:
            return
        data = orjson.loads(msg.data)
        obj = data.get("object") or {}
        meta = obj.get("metadata") or {}
        rev = msg.revision or int(meta.get("resourceVersion") or 0)
        res = BY_PLURAL.get(("" if parts[2] == "core" else _group_of(parts[2], parts[3]), parts[3]))
        if res is None:
            return
        raw = msg.data
        if data.get("partial") and self._fetch is not None and data.get("type") != "DELETED":
            # too large for one NATS message: the publisher sent metadata only
            full = await self._fetch(res, meta.get("namespace") or "", meta.get("name") or "")
            if full is not None:
                obj = full
                raw = orjson.dumps({"type": data.get("type"), "object": obj})
        ev = Event(rev, data.get("type", ""), obj, raw, meta.get("namespace") or "", meta.get("name") or "")
        key = (res.group, res.plural)
        buf = self._events.setdefault(key, deque())
        if buf and rev <= buf[-1].revision and (buf[-1].namespace, buf[-1].name) == (ev.namespace, ev.name):
            return  # a duplicate delivery
        buf.append(ev)
        if len(buf) > PARSED:
            buf[-PARSED - 1].release()
        if len(buf) > WINDOW:
            self._floor[key] = buf.popleft().revision
        self.latest = max(self.latest, rev)
        for w in self._watchers.get(key, ()):
            w.queue.put_nowait(ev)
        for fn in self._listeners.get(key, ()):
            fn(ev.type, obj)

    def register(self, w: Watcher, since: int | None) -> list[Event]:
        """Add a watcher; returns buffered events after `since` (None = none wanted)."""
        key = (w.res.group, w.res.plural)
        if since is not None and since < max(self._start, self._floor.get(key, 0)):
            raise Expired(f"too old resource version: {since} ({max(self._start, self._floor.get(key, 0))})")
        self._watchers.setdefault(key, set()).add(w)
        if since is None:
            return []
        return [e for e in self._events.get(key, ()) if e.revision > since]

    def unregister(self, w: Watcher) -> None:
        self._watchers.get((w.res.group, w.res.plural), set()).discard(w)

    async def stream(
        self,
        w: Watcher,
        since: int | None,
        initial: Callable[[], Awaitable[tuple[list[dict[str, Any]], int]]] | None,
        timeout: float,
        bookmarks: bool,
        render: Callable[[str, dict[str, Any], bytes | None], bytes],
    ) -> AsyncIterator[bytes]:
        """The lines of one watch response."""
        try:
            backlog = self.register(w, since)
        except Expired as e:
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": str(e), "reason": "Expired", "code": 410}
            yield orjson.dumps({"type": "ERROR", "object": status}) + b"\n"
            return
        try:
            last = since or 0
            if initial is not None:
                items, last = await initial()
                w.track = True
                for obj in items:
                    meta = obj.get("metadata") or {}
                    w.sent.add((meta.get("namespace") or "", meta.get("name") or ""))
                    yield render("ADDED", obj, None)
            for ev in backlog:
                if ev.revision > last:
                    kind = w.wants(ev)
                    if kind:
                        yield render(kind, ev.obj, ev.raw if kind == ev.type else None)
                    last = ev.revision
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = loop.time() + 5.0
            while True:
                wait = deadline - loop.time()
                if bookmarks:
                    wait = min(wait, next_bookmark - loop.time())
                if wait <= 0 and loop.time() >= deadline:
                    return
                try:
                    item = await asyncio.wait_for(w.queue.get(), max(wait, 0.0))
                except TimeoutError:
                    if loop.time() >= deadline:
                        return
                    next_bookmark = loop.time() + 5.0
                    rv = str(max(last, self.latest))
                    yield render("BOOKMARK", {"kind": w.res.kind, "apiVersion": w.res.api_version,
                                              "metadata": {"resourceVersion": rv}}, None)
                    continue
                # Under a burst many events wait in the queue: send everything already queued as
                # one chunk (one write to the socket) instead of one chunk per event.
                batch: list[bytes] = []
                ended = False
                while True:
                    if item is None:
                        ended = True
                        break
                    if item.revision > last:
                        last = item.revision
                        kind = w.wants(item)
                        if kind:
                            batch.append(render(kind, item.obj, item.raw if kind == item.type else None))
                    if w.queue.empty() or len(batch) >= MAX_BATCH:
                        break
                    item = w.queue.get_nowait()
                if batch:
                    yield b"".join(batch)
                if ended:
                    return
        finally:
            self.unregister(w)


def _group_of(token: str, plural: str) -> str:
    """Map a subject group token back to the API group (dots were escaped to `_`)."""
    for (group, p) in BY_PLURAL:
        if p == plural and busmod.token(group or "core") == token:
            return group
    return token

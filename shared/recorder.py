"""Kubernetes Event objects (core/v1) for what components do.

`kubectl describe` and `kubectl get events` tell an object's story from these: Scheduled,
Pulling, Started, ScalingReplicaSet, FailedScheduling, BackOff... Like client-go's recorder,
repeats of the same (object, reason, message) within a short window update one Event's count
instead of creating a new object, and recording never blocks or fails the caller's work.

Events are the least important writes a component makes: at most MAX_WRITING are in flight at
once (so they never crowd bindings and status writes out of the client's connections), and when
MAX_PENDING are already waiting a new one is dropped and counted, as client-go's broadcaster
drops when its queue is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.log import event

log = logging.getLogger("kubenats.recorder")
EVENTS = BY_PLURAL[("", "events")]
AGGREGATE_WINDOW = 600.0
SEEN_MAX = 4096  # (object, reason, message) keys remembered for aggregation, least recent evicted
MAX_WRITING = 4
MAX_PENDING = 1000


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "") -> None:
        self._client = client
        self._component = component
        self._host = host
        self._seen: OrderedDict[tuple[str, str, str, str], tuple[str, int, float]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writing: asyncio.Semaphore | None = None
        self.dropped = 0

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str = "") -> None:
        """Fire and forget: schedule the write and return at once (or drop it when too many wait)."""
        if len(self._tasks) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                event(log, "events_dropped", logging.WARNING, component=self._component, dropped=self.dropped)
            return
        if self._writing is None:
            self._writing = asyncio.Semaphore(MAX_WRITING)
        task = asyncio.get_running_loop().create_task(self._write(obj, type_, reason, message, field_path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str) -> None:
        assert self._writing is not None
        async with self._writing:
            await self._write_one(obj, type_, reason, message, field_path)

    async def _write_one(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        involved = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
                    "namespace": meta.get("namespace", ""), "uid": meta.get("uid", ""),
                    "resourceVersion": meta.get("resourceVersion", "")}
        if not involved["namespace"]:
            involved.pop("namespace")
        if field_path:
            involved["fieldPath"] = field_path
        key = (involved.get("uid", "") or involved["name"], reason, message, ns)
        now = _now()
        prior = self._seen.get(key)
        try:
            if prior is not None and time.monotonic() - prior[2] < AGGREGATE_WINDOW:
                name, count, _ = prior
                await self._client.patch(EVENTS, ns, name, {"count": count + 1, "lastTimestamp": now})
                self._seen[key] = (name, count + 1, time.monotonic())
                self._seen.move_to_end(key)
                return
            name = f"{involved['name']}.{uuid.uuid4().hex[:16]}"
            body = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
                    "involvedObject": involved, "reason": reason, "message": message, "type": type_,
                    "source": {"component": self._component, **({"host": self._host} if self._host else {})},
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                    "reportingComponent": self._component, "reportingInstance": self._host or self._component}
            await self._client.create(EVENTS, ns, body)
            self._seen[key] = (name, 1, time.monotonic())
            self._seen.move_to_end(key)
            while len(self._seen) > SEEN_MAX:  # O(1) per event: the least recently seen go first
                self._seen.popitem(last=False)
        except ApiError as e:
            self._seen.pop(key, None)
            event(log, "event_record_failed", logging.DEBUG, reason=reason, error=e.message)

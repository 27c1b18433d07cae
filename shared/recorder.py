"""Kubernetes Event objects (core/v1) for what components do.

`kubectl describe` and `kubectl get events` tell an object's story from these: Scheduled,
Pulling, Started, ScalingReplicaSet, FailedScheduling, BackOff... Like client-go's recorder,
repeats of the same (object, reason, message) within a short window update one Event's count
instead of creating a new object, and recording never blocks or fails the caller's work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.log import event

log = logging.getLogger("kubenats.recorder")
EVENTS = BY_PLURAL[("", "events")]
AGGREGATE_WINDOW = 600.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "") -> None:
        self._client = client
        self._component = component
        self._host = host
        self._seen: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str = "") -> None:
        """Fire and forget: schedule the write and return at once."""
        task = asyncio.get_running_loop().create_task(self._write(obj, type_, reason, message, field_path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str) -> None:
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
                return
            name = f"{involved['name']}.{uuid.uuid4().hex[:16]}"
            body = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
                    "involvedObject": involved, "reason": reason, "message": message, "type": type_,
                    "source": {"component": self._component, **({"host": self._host} if self._host else {})},
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                    "reportingComponent": self._component, "reportingInstance": self._host or self._component}
            await self._client.create(EVENTS, ns, body)
            self._seen[key] = (name, 1, time.monotonic())
            if len(self._seen) > 4096:
                cutoff = time.monotonic() - AGGREGATE_WINDOW
                self._seen = {k: v for k, v in self._seen.items() if v[2] > cutoff}
        except ApiError as e:
            self._seen.pop(key, None)
            event(log, "event_record_failed", logging.DEBUG, reason=reason, error=e.message)

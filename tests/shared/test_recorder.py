"""EventRecorder's own logic against a stand-in client: aggregation, the write limit, dropping
when too many wait, and LRU eviction of aggregation keys. (Events through the real API server
are covered by the component tests and `kubectl describe`.)"""

from __future__ import annotations

import asyncio
from typing import Any

from shared import recorder
from shared.recorder import EventRecorder


class SlowClient:
    def __init__(self) -> None:
        self.creates: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.peak = 0
        self.gate = asyncio.Event()

    async def create(self, _res: Any, _ns: str, body: dict[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await self.gate.wait()
        self.in_flight -= 1
        self.creates.append(body)
        return body

    async def patch(self, _res: Any, _ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((name, body))
        return body


def pod(name: str) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "d", "uid": f"u-{name}"}}


async def test_repeats_aggregate_into_one_event() -> None:
    client = SlowClient()
    client.gate.set()
    rec = EventRecorder(client, "test")  # type: ignore[arg-type]
    rec.record(pod("a"), "Normal", "Pulled", "image present")
    await rec.flush()
    rec.record(pod("a"), "Normal", "Pulled", "image present")
    rec.record(pod("b"), "Normal", "Pulled", "image present")
    await rec.flush()
    assert len(client.creates) == 2 and len(client.patches) == 1
    assert client.patches[0][1]["count"] == 2


async def test_writes_are_limited_and_the_excess_is_dropped(monkeypatch: Any) -> None:
    monkeypatch.setattr(recorder, "MAX_PENDING", 50)
    client = SlowClient()
    rec = EventRecorder(client, "test")  # type: ignore[arg-type]
    for i in range(80):
        rec.record(pod(f"p{i}"), "Normal", "Scheduled", "assigned")
    await asyncio.sleep(0.05)
    assert client.in_flight == recorder.MAX_WRITING
    assert rec.dropped == 30
    client.gate.set()
    await rec.flush()
    assert len(client.creates) == 50 and client.peak == recorder.MAX_WRITING


async def test_aggregation_keys_are_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(recorder, "SEEN_MAX", 10)
    client = SlowClient()
    client.gate.set()
    rec = EventRecorder(client, "test")  # type: ignore[arg-type]
    for i in range(25):
        rec.record(pod(f"p{i}"), "Normal", "Scheduled", "assigned")
        await rec.flush()
    rec.record(pod("p24"), "Normal", "Scheduled", "assigned")  # still remembered: aggregated
    rec.record(pod("p0"), "Normal", "Scheduled", "assigned")  # evicted: a new Event
    await rec.flush()
    assert len(client.patches) == 1 and len(client.creates) == 26

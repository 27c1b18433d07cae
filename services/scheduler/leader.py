"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's ``leaderelection`` package.

Why this exists: several scheduler replicas may run for availability, but two schedulers placing
pods from the same cache-less view of each other's assumptions would overcommit nodes. Exactly one
replica schedules: the holder of the Lease ``kube-system/kube-scheduler``.

* A candidate reads the Lease every ``retry_period`` (2 s). It takes it only when it is free
  (no holder) or expired: the record has not changed for ``leaseDurationSeconds`` (15 s) as
  measured on the candidate's own monotonic clock, as client-go does, so wall-clock skew between
  replicas cannot make two leaders. client-go dates a change to the poll that *saw* it, so its
  takeover lands up to two polls after the lease really ran out. Here the change is dated by the
  record's ``renewTime``, clamped into what the candidate's own clock can vouch for: after the
  start of the previous poll (the record was not there yet), not after it was seen, and never
  earlier than ``(leaseDuration - renewDeadline) / 2`` before it was seen; and the candidate wakes
  exactly at expiry. With synchronised clocks takeover comes right at ``renewTime +
  leaseDurationSeconds``, i.e. within the lease duration of the holder's death; with skewed ones
  it stays inside the clamp, where the holder, which fences itself ``renew_deadline`` after the
  *start* of its last successful renewal, has stopped at least 2.5 s before (see
  :meth:`LeaderElector._observe`).
* Every write is an update carrying the ``resourceVersion`` that was read (or a create, for a
  Lease that does not exist yet), so when two candidates race only one write succeeds and the
  other gets 409: two replicas can never both win.
* The leader renews every ``retry_period``. If it sees another holder it has lost at once; if it
  cannot renew for ``renew_deadline`` (10 s, shorter than the lease duration) it gives up before
  anyone else may take over, and the scheduling callback is cancelled immediately.
* On an orderly shutdown the leader releases the Lease (empty holder, duration 1 s) so a standby
  takes over without waiting for expiry (client-go's ``ReleaseOnCancel``).

``renewTime`` / ``acquireTime`` are RFC 3339 micro times (``2006-01-02T15:04:05.000000Z``);
``leaseTransitions`` counts holder changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from shared.api.resources import BY_PLURAL, Resource
from shared.errors import ApiError
from shared.log import event

__all__ = ["DEFAULT_LEASE_DURATION", "DEFAULT_RENEW_DEADLINE", "DEFAULT_RETRY_PERIOD", "LeaderElector",
           "default_identity", "micro_time"]

log = logging.getLogger("kubenats.scheduler.leader")

LEASES: Final = BY_PLURAL[("coordination.k8s.io", "leases")]
DEFAULT_LEASE_DURATION: Final = 15.0
DEFAULT_RENEW_DEADLINE: Final = 10.0
DEFAULT_RETRY_PERIOD: Final = 2.0
_JITTER: Final = 1.2  # wait.JitterFactor of client-go's acquire loop


class LeaseClient(Protocol):
    """What the elector needs from ``shared.client.ApiClient``."""

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]: ...

    async def create(self, res: Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]: ...

    async def update(self, res: Resource, obj: dict[str, Any], sub: str = "") -> dict[str, Any]: ...


def micro_time(ts: float | None = None) -> str:
    """A metav1.MicroTime in RFC 3339 form with microseconds."""
    dt = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def default_identity() -> str:
    """``hostname_<uuid>``, as kube-scheduler names its lock holder."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Acquire, renew and release one Lease; :meth:`run` runs a callback only while leading."""

    def __init__(self, client: LeaseClient, *, namespace: str = "kube-system", name: str = "kube-scheduler",
                 identity: str | None = None, lease_duration: float = DEFAULT_LEASE_DURATION,
                 renew_deadline: float = DEFAULT_RENEW_DEADLINE, retry_period: float = DEFAULT_RETRY_PERIOD,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        if not lease_duration > renew_deadline > retry_period * _JITTER > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period * 1.2 > 0")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wall = wall
        self._observed: dict[str, Any] | None = None  # the last spec seen
        self._observed_time = 0.0  # local clock time from which the current spec counts as unchanged
        self._last_poll: float | None = None  # when the previous read was sent
        self._attempt_started = 0.0  # when the last try_acquire_or_renew began
        self._observed_rv = ""
        self._leading = False
        self.transitions_seen = 0

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def lock_description(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _observe(self, lease: dict[str, Any], polled: float | None = None) -> dict[str, Any]:
        """Remember the record; a change is dated by its renewTime, within what our clock vouches for.

        A record first seen now was written before now and after the previous read was sent.
        Its ``renewTime`` (translated to our clock) is used inside that window, and never more
        than ``margin`` before now: the holder fences itself ``renew_deadline`` after starting
        the renewal that wrote the record, which was before now, so taking over
        ``lease_duration`` after ``now - margin`` leaves it ``lease_duration - renew_deadline -
        margin`` seconds to have stopped, whatever the wall clocks say.
        """
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        now = self.clock()
        if spec != self._observed:
            margin = (self.lease_duration - self.renew_deadline) / 2
            lowest = now - margin
            if self._last_poll is not None:
                lowest = max(lowest, self._last_poll)
            since = now
            renewed = _parse_micro_time(spec.get("renewTime"))
            if renewed is not None:
                since = now - (self.wall() - renewed)
            self._observed = spec
            self._observed_time = min(max(since, lowest), now)
        if polled is not None:
            self._last_poll = polled
        self._observed_rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        return spec

    def _expiry(self, spec: dict[str, Any]) -> float:
        """Local clock time at which the observed record expires."""
        duration = spec.get("leaseDurationSeconds")
        if not isinstance(duration, int) or duration <= 0:
            duration = int(self.lease_duration)
        return self._observed_time + duration

    def _expired(self, spec: dict[str, Any]) -> bool:
        return self._expiry(spec) <= self.clock()

    def _record(self, old: dict[str, Any] | None, now: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.identity,
                                "leaseDurationSeconds": int(self.lease_duration), "renewTime": now}
        if old is not None and old.get("holderIdentity") == self.identity and self._leading:
            spec["acquireTime"] = old.get("acquireTime") or now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["acquireTime"] = now
            # client-go counts every acquisition of an existing record, released or expired
            transitions = int((old or {}).get("leaseTransitions") or 0)
            spec["leaseTransitions"] = transitions + 1 if old is not None else transitions
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's ``tryAcquireOrRenew``: True when we hold the lease afterwards."""
        now = micro_time(self.wall())
        polled = self._attempt_started = self.clock()
        try:
            lease = await self.client.get(LEASES, self.namespace, self.name)
        except ApiError as e:
            if e.code != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._record(None, now)}
            try:
                created = await self.client.create(LEASES, self.namespace, body)
            except ApiError as ce:
                if ce.code == 409:
                    return False  # another candidate created it first
                raise
            self._observe(created)
            return True
        old = self._observe(lease, polled)
        holder = old.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(old):
            return False
        new = dict(lease)
        new["metadata"] = {**(lease.get("metadata") or {}), "resourceVersion": self._observed_rv}
        new["spec"] = {**old, **self._record(old, now)}
        try:
            updated = await self.client.update(LEASES, new)
        except ApiError as e:
            if e.code == 409:
                return False  # someone wrote in between: re-read next round
            raise
        self._observe(updated)
        return True

    async def acquire(self) -> None:
        """Retry every ``retry_period`` (jittered) until we hold the lease."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self._leading = True
                    spec = self._observed or {}
                    event(log, "leader_acquired", lease=self.lock_description, identity=self.identity,
                          transitions=spec.get("leaseTransitions"))
                    return
            except ApiError as e:
                event(log, "leader_acquire_failed", logging.WARNING, lease=self.lock_description, error=e.message)
            delay = self.retry_period * random.uniform(1.0, _JITTER)
            if self._observed is not None:  # wake exactly when the holder's lease runs out, if sooner
                delay = min(delay, max(0.01, self._expiry(self._observed) - self.clock() + 0.01))
            await asyncio.sleep(delay)

    async def hold(self) -> str:
        """Renew every ``retry_period`` while leading; returns the reason once leadership is lost."""
        last_renew = self._attempt_started  # the acquisition counts from when it was sent
        while True:
            await asyncio.sleep(self.retry_period)
            started = self.clock()
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(),
                                            max(0.1, last_renew + self.renew_deadline - self.clock()))
            except (ApiError, TimeoutError) as e:
                ok = False
                reason = e.message if isinstance(e, ApiError) else "renew timed out"
                event(log, "leader_renew_failed", logging.WARNING, lease=self.lock_description, error=reason)
            if ok:
                last_renew = started  # fence from when the renewal was sent, not when it was confirmed
                continue
            holder = (self._observed or {}).get("holderIdentity") or ""
            if holder and holder != self.identity:
                self._leading = False
                return f"lease taken by {holder}"
            if self.clock() - last_renew >= self.renew_deadline:
                self._leading = False
                return "failed to renew within the renew deadline"

    async def release(self) -> bool:
        """Give the lease up (empty holder, 1 s duration) if we hold it; True on success."""
        if not self._leading:
            return False
        self._leading = False
        try:
            lease = await self.client.get(LEASES, self.namespace, self.name)
            spec = self._observe(lease)
            if spec.get("holderIdentity") != self.identity:
                return False
            now = micro_time(self.wall())
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now,
                             "acquireTime": now}
            await self.client.update(LEASES, lease)
        except ApiError as e:
            event(log, "leader_release_failed", logging.WARNING, lease=self.lock_description, error=e.message)
            return False
        event(log, "leader_released", lease=self.lock_description, identity=self.identity)
        return True

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Forever: acquire, run ``lead()`` while leading, cancel it the moment leadership is lost.

        When ``lead`` returns or raises, or this coroutine is cancelled, the lease is released
        and the outcome propagates.
        """
        while True:
            await self.acquire()
            lead_task = asyncio.ensure_future(lead())
            hold_task = asyncio.ensure_future(self.hold())
            try:
                await asyncio.wait({lead_task, hold_task}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await _cancel(lead_task, hold_task)
                await asyncio.shield(self.release())
                raise
            if hold_task.done():
                await _cancel(lead_task)
                reason = hold_task.result()
                event(log, "leader_lost", logging.WARNING, lease=self.lock_description, identity=self.identity,
                      reason=reason)
                continue
            await _cancel(hold_task)
            await self.release()
            lead_task.result()  # re-raise its exception, if any
            return


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except asyncio.CancelledError:
            pass
        except Exception as e:
            event(log, "leader_task_failed", logging.WARNING, error=f"{type(e).__name__}: {e}")

"""Restart and image-pull back-off with the semantics of client-go's `flowcontrol.Backoff`.

Why this exists: CrashLoopBackOff and ImagePullBackOff are what users see when a container keeps
failing, and their timing is part of Kubernetes' contract (10 s, doubling, capped at 5 min, forgotten
after twice the cap without a failure). Keeping it a small pure class with an injectable clock and
injectable base/cap lets tests use 0.5 s and check the doubling without waiting minutes.

Upstream `doBackOff` (kuberuntime_manager.go) uses it so: a container that exited at time `ts` is
in back-off while `now - ts < delay(key)`; once out, `next(key, ts)` doubles the delay and the
container restarts. The first exit therefore restarts at once, the next ones after 10 s, 20 s, ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float, maximum: float, clock: Callable[[], float] = time.time) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("back-off needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * self.maximum

    def get(self, key: str) -> float:
        """The current delay of key (0 when it has none)."""
        e = self._entries.get(key)
        return e.delay if e else 0.0

    def next(self, key: str, event_time: float) -> None:
        """Record a failure at event_time: the first (or the first after a long quiet) starts at
        `initial`, later ones double up to `maximum`."""
        e = self._entries.get(key)
        if e is None or self._expired(event_time, e.last_update):
            self._entries[key] = _Entry(self.initial, event_time)
        else:
            e.delay = min(e.delay * 2, self.maximum)
            e.last_update = event_time

    def in_backoff_since(self, key: str, event_time: float) -> bool:
        """Whether something that happened at event_time is still inside key's back-off window."""
        e = self._entries.get(key)
        if e is None or self._expired(event_time, e.last_update):
            return False
        return self.clock() - event_time < e.delay

    def in_backoff_since_update(self, key: str) -> bool:
        """Whether key's last recorded failure is younger than its delay (image pulls)."""
        e = self._entries.get(key)
        if e is None or self._expired(self.clock(), e.last_update):
            return False
        return self.clock() - e.last_update < e.delay

    def remaining(self, key: str, since: float) -> float:
        """Seconds until `since + delay(key)`; 0 when that has passed or key has no entry."""
        e = self._entries.get(key)
        if e is None:
            return 0.0
        return max(0.0, since + e.delay - self.clock())

    def last_update(self, key: str) -> float | None:
        e = self._entries.get(key)
        return e.last_update if e else None

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key starting with prefix (a pod's keys when it goes away)."""
        for k in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[k]

    def gc(self) -> None:
        """Drop entries quiet for longer than twice the cap (they would start over anyway)."""
        now = self.clock()
        for k in [k for k, e in self._entries.items() if self._expired(now, e.last_update)]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)

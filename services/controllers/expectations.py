"""What a controller has asked the API for and not yet seen in its caches (controller_utils.go).

A replica set controller creates pods, then learns about them only when their events reach its
informer. Between the two it must not look at its cache and count again, or a slow event turns
into duplicate pods. So before issuing creations or deletions it records how many it expects;
informer handlers lower the counts as the events arrive; and a key is not acted on until its
expectations are satisfied (all observed) or have expired (five minutes: an event may be lost
for good, and a controller must not sleep forever). Deletions are tracked by pod key, as
upstream's UIDTrackingControllerExpectations does, so that a graceful deletion seen first as an
update with deletionTimestamp and later as the delete itself is counted once.

The state is in memory only: a restarted controller starts with none, relists, and counts
what really exists, which is exactly what makes a crash safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.log import event

log = logging.getLogger("kubenats.controllers.expectations")

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Expectation:
    add: int
    delete: int
    timestamp: float
    keys: set[str] = field(default_factory=set)

    def fulfilled(self) -> bool:
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    """Expected creations (a count) and deletions (a set of object keys) per controller key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._clock = clock
        self._timeout = timeout
        self._store: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending for key, or what is pending has expired."""
        exp = self._store.get(key)
        if exp is None or exp.fulfilled():
            return True
        if self._clock() - exp.timestamp > self._timeout:
            event(log, "expectations_expired", key=key, add=exp.add, delete=exp.delete)
            return True
        return False

    def get(self, key: str) -> tuple[int, int] | None:
        """(pending adds, pending deletes) or None when nothing was recorded."""
        exp = self._store.get(key)
        return None if exp is None else (exp.add, exp.delete)

    def expect_creations(self, key: str, count: int) -> None:
        """Set (not add to) the creations expected for key; forgets earlier expectations."""
        self._store[key] = _Expectation(count, 0, self._clock())

    def expect_deletions(self, key: str, object_keys: Iterable[str]) -> None:
        """Expect the deletion of exactly these objects; forgets earlier expectations."""
        keys = set(object_keys)
        self._store[key] = _Expectation(0, len(keys), self._clock(), keys)

    def creation_observed(self, key: str) -> None:
        self.lower(key, add=1)

    def deletion_observed(self, key: str, object_key: str) -> None:
        """Count the deletion of object_key once, and only if it was expected."""
        exp = self._store.get(key)
        if exp is not None and object_key in exp.keys:
            exp.keys.discard(object_key)
            exp.delete -= 1

    def lower(self, key: str, add: int = 0, delete: int = 0) -> None:
        exp = self._store.get(key)
        if exp is not None:
            exp.add -= add
            exp.delete -= delete

    def delete(self, key: str) -> None:
        self._store.pop(key, None)

    def __len__(self) -> int:
        return len(self._store)

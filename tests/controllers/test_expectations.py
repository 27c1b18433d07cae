"""ControllerExpectations: set before acting, lowered by observations, satisfied or expired."""

from __future__ import annotations

from services.controllers.expectations import EXPECTATIONS_TIMEOUT, ControllerExpectations


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_creations_must_all_be_observed() -> None:
    e = ControllerExpectations()
    assert e.satisfied("ns/rs")  # never recorded: act
    e.expect_creations("ns/rs", 3)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs") and e.get("ns/rs") == (1, 0)
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.creation_observed("ns/rs")  # a late extra observation is harmless
    assert e.satisfied("ns/rs")


def test_failed_creations_are_lowered() -> None:
    e = ControllerExpectations()
    e.expect_creations("k", 8)
    e.lower("k", add=5)  # five never attempted or failed
    for _ in range(3):
        e.creation_observed("k")
    assert e.satisfied("k")


def test_deletions_counted_once_per_expected_key() -> None:
    e = ControllerExpectations()
    e.expect_deletions("k", ["ns/a", "ns/b"])
    e.deletion_observed("k", "ns/a")  # seen first as an update with deletionTimestamp
    e.deletion_observed("k", "ns/a")  # then as the delete itself: not counted again
    e.deletion_observed("k", "ns/zzz")  # not one we deleted
    assert not e.satisfied("k") and e.get("k") == (0, 1)
    e.deletion_observed("k", "ns/b")
    assert e.satisfied("k")


def test_new_expectations_replace_old_ones_and_expire() -> None:
    clock = Clock()
    e = ControllerExpectations(clock=clock)
    e.expect_creations("k", 2)
    e.expect_deletions("k", ["ns/a"])
    assert e.get("k") == (0, 1)
    clock.t += EXPECTATIONS_TIMEOUT - 1
    assert not e.satisfied("k")
    clock.t += 2
    assert e.satisfied("k")  # a lost event must not put the controller to sleep forever
    e.delete("k")
    assert e.get("k") is None and len(e) == 0

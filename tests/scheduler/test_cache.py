"""The scheduler cache: NodeInfos kept from informer events, and assume / confirm / forget / expire."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.scheduler.cache import SchedulerCache
from services.scheduler.framework import PodInfo


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def node(name: str, cpu: str = "4", pods: str = "110") -> dict[str, Any]:
    res = {"cpu": cpu, "memory": "8Gi", "pods": pods}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
            "status": {"capacity": res, "allocatable": res}}


def pod(name: str, cpu: str = "500m", node_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": spec}


def bound(p: dict[str, Any], node_name: str) -> dict[str, Any]:
    out = copy.deepcopy(p)
    out["spec"]["nodeName"] = node_name
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> SchedulerCache:
    c = SchedulerCache(clock=clock)
    c.add_node(node("a"))
    c.add_node(node("b"))
    return c


def cpu(cache: SchedulerCache, name: str) -> int:
    ni = cache.node_info(name)
    assert ni is not None
    return ni.requested.milli_cpu


def test_node_list_is_reused_until_nodes_change(cache: SchedulerCache) -> None:
    first = cache.node_infos()
    assert [ni.name for ni in first] == ["a", "b"]
    cache.update_node(node("a", cpu="8"))
    assert cache.node_infos() is first  # an update changes a NodeInfo in place
    assert first[0].allocatable.milli_cpu == 8000
    cache.add_node(node("c"))
    assert [ni.name for ni in cache.node_infos()] == ["a", "b", "c"]
    cache.remove_node("b")
    assert [ni.name for ni in cache.node_infos()] == ["a", "c"]


def test_bound_pods_are_counted_and_freed(cache: SchedulerCache) -> None:
    cache.add_pod(pod("p", node_name="a"))
    assert cpu(cache, "a") == 500
    cache.update_pod(None, pod("p", cpu="1", node_name="a"))
    assert cpu(cache, "a") == 1000
    assert cache.remove_pod(pod("p", node_name="a"))
    assert cpu(cache, "a") == 0
    assert not cache.remove_pod("uid-p")


def test_assumed_pod_counts_at_once_and_is_confirmed_by_the_informer(cache: SchedulerCache) -> None:
    p = pod("p")
    cache.assume(PodInfo(p), "a")
    assert cache.is_assumed("uid-p")
    assert cpu(cache, "a") == 500  # the next decision sees it
    cache.finish_binding("uid-p")
    cache.add_pod(bound(p, "a"))  # the informer shows the binding
    assert not cache.is_assumed("uid-p")
    assert cpu(cache, "a") == 500  # counted once, not twice
    assert cache.node_info("a").num_pods == 1  # type: ignore[union-attr]
    assert not cache.forget("uid-p")  # a confirmed pod is not forgotten
    assert cpu(cache, "a") == 500


def test_confirmation_on_another_node_moves_the_pod(cache: SchedulerCache) -> None:
    p = pod("p")
    cache.assume(PodInfo(p), "a")
    cache.add_pod(bound(p, "b"))  # someone else bound it elsewhere: the API is the truth
    assert cpu(cache, "a") == 0
    assert cpu(cache, "b") == 500
    assert cache.node_of("uid-p") == "b"


def test_forget_releases_an_assumption(cache: SchedulerCache) -> None:
    cache.assume(PodInfo(pod("p")), "a")
    assert cache.forget("uid-p")
    assert cpu(cache, "a") == 0
    assert not cache.has_pod("uid-p")
    cache.assume(PodInfo(pod("p")), "b")  # may be assumed again after forgetting
    assert cpu(cache, "b") == 500


def test_assume_twice_or_on_unknown_node_is_refused(cache: SchedulerCache) -> None:
    cache.assume(PodInfo(pod("p")), "a")
    with pytest.raises(ValueError):
        cache.assume(PodInfo(pod("p")), "b")
    with pytest.raises(KeyError):
        cache.assume(PodInfo(pod("q")), "nowhere")


def test_assumptions_expire_only_after_binding_finished_plus_ttl(cache: SchedulerCache, clock: Clock) -> None:
    cache.assume(PodInfo(pod("p")), "a")
    clock.now += 1000
    assert cache.cleanup_expired() == []  # the bind has not returned: never expires
    cache.finish_binding("uid-p")
    clock.now += 29.9
    assert cache.cleanup_expired() == []
    clock.now += 0.1
    assert cache.cleanup_expired() == ["uid-p"]
    assert cpu(cache, "a") == 0
    assert cache.expired == 1


def test_confirmed_pods_never_expire(cache: SchedulerCache, clock: Clock) -> None:
    p = pod("p")
    cache.assume(PodInfo(p), "a")
    cache.finish_binding("uid-p")
    cache.add_pod(bound(p, "a"))
    clock.now += 3600
    assert cache.cleanup_expired() == []
    assert cpu(cache, "a") == 500


def test_confirmation_before_bind_returns_is_fine(cache: SchedulerCache, clock: Clock) -> None:
    p = pod("p")
    cache.assume(PodInfo(p), "a")
    cache.add_pod(bound(p, "a"))  # the event overtook the HTTP response
    cache.finish_binding("uid-p")  # no-op for a confirmed pod
    clock.now += 3600
    assert cache.cleanup_expired() == []
    assert cpu(cache, "a") == 500


def test_pods_on_unknown_nodes_wait_on_a_placeholder(cache: SchedulerCache) -> None:
    cache.add_pod(pod("p", node_name="later"))
    assert cache.node_info("later") is None
    assert [ni.name for ni in cache.node_infos()] == ["a", "b"]
    cache.add_node(node("later"))
    assert cpu(cache, "later") == 500  # counted as soon as the node appears
    cache.remove_node("later")  # deleted with the pod still bound: placeholder again
    assert [ni.name for ni in cache.node_infos()] == ["a", "b"]
    cache.remove_pod("uid-p")
    cache.add_node(node("later"))
    assert cpu(cache, "later") == 0

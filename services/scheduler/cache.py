"""The scheduler cache: what every node holds right now, including pods the scheduler just placed.

Why this exists: scoring and filtering read each node's requested resources, ports, pods and
labels. Rebuilding that from the informers for every pod would cost O(pods) per decision, and
reading only what the informers show would let two decisions in a row both see room that only
one of them can have (the first pod's binding is still in flight). So, as kube-scheduler's
``internal/cache``:

* one :class:`~services.scheduler.framework.NodeInfo` per node, kept incrementally from informer
  events: nodes set it, bound pods are added to their node's NodeInfo and removed when deleted;
* **assume**: once a node is chosen the pod is added to that NodeInfo at once, before the bind
  call returns, so the next decision counts it. When the informer shows the pod bound the
  assumption is *confirmed* (replaced by the real pod, on whatever node the API says); a failed
  bind *forgets* it; an assumption whose bind finished but which the informer never confirmed
  *expires* after ``assume_ttl`` (30 s), so a lost event cannot leak capacity forever;
* a pod bound to a node the cache does not know (yet) is kept on a placeholder NodeInfo that no
  decision sees, so it is counted as soon as the node appears, and a node deleted while pods are
  still on it stays as such a placeholder until they are gone.

:meth:`SchedulerCache.node_infos` returns the same list object until a node is added or removed,
so a scheduling cycle neither copies NodeInfos nor rebuilds the list. The cache is not
thread-safe: everything runs on one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.scheduler.framework import NodeInfo, Obj, PodInfo, pod_key

__all__ = ["DEFAULT_ASSUME_TTL", "SchedulerCache"]

DEFAULT_ASSUME_TTL: Final = 30.0


@dataclass(slots=True)
class _PodState:
    info: PodInfo
    node: str
    assumed: bool
    deadline: float | None = None  # assumed and binding finished: expires at this clock time


def _node_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _pod_node(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


class SchedulerCache:
    """NodeInfos for every node plus the scheduler's assumed pods."""

    def __init__(self, *, assume_ttl: float = DEFAULT_ASSUME_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.assume_ttl = assume_ttl
        self.clock = clock
        self._nodes: dict[str, NodeInfo] = {}
        self._placeholders: set[str] = set()  # NodeInfos without a Node object (pods only)
        self._pods: dict[str, _PodState] = {}
        self._assumed: set[str] = set()
        self._list: list[NodeInfo] | None = None
        self.expired = 0

    # ------------------------------------------------------------------ reading

    def node_infos(self) -> list[NodeInfo]:
        """The NodeInfos of existing nodes, in a list reused until the node set changes (do not mutate)."""
        if self._list is None:
            self._list = [ni for name, ni in self._nodes.items() if name not in self._placeholders]
        return self._list

    def node_info(self, name: str) -> NodeInfo | None:
        """The NodeInfo of an existing node (placeholders excluded)."""
        if name in self._placeholders:
            return None
        return self._nodes.get(name)

    def __len__(self) -> int:
        return len(self._nodes) - len(self._placeholders)

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def assumed_count(self) -> int:
        return len(self._assumed)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def has_pod(self, key: str) -> bool:
        return key in self._pods

    def node_of(self, key: str) -> str | None:
        st = self._pods.get(key)
        return st.node if st is not None else None

    # ------------------------------------------------------------------ nodes

    def _info_for(self, name: str) -> NodeInfo:
        ni = self._nodes.get(name)
        if ni is None:
            ni = NodeInfo({"metadata": {"name": name}})
            self._nodes[name] = ni
            self._placeholders.add(name)
        return ni

    def add_node(self, node: Obj) -> NodeInfo:
        """A node appeared (or changed): set it on its NodeInfo, keeping the pods already there."""
        name = _node_name(node)
        ni = self._nodes.get(name)
        if ni is None:
            ni = NodeInfo(node)
            self._nodes[name] = ni
            self._list = None
        else:
            ni.set_node(node)
            if name in self._placeholders:
                self._placeholders.discard(name)
                self._list = None
        return ni

    update_node = add_node

    def remove_node(self, node: Obj | str) -> None:
        """A node was deleted; its NodeInfo lingers as a placeholder while pods are still bound to it."""
        name = node if isinstance(node, str) else _node_name(node)
        ni = self._nodes.get(name)
        if ni is None or name in self._placeholders:
            return
        self._list = None
        if ni.num_pods:
            self._placeholders.add(name)
        else:
            del self._nodes[name]

    def _drop_if_empty_placeholder(self, name: str) -> None:
        if name in self._placeholders and not self._nodes[name].num_pods:
            del self._nodes[name]
            self._placeholders.discard(name)

    # ------------------------------------------------------------------ pods from the informer

    def add_pod(self, pod: Obj) -> None:
        """A pod bound to a node (``spec.nodeName``): count it there; confirms an assumption."""
        key = pod_key(pod)
        node = _pod_node(pod)
        if not node:
            raise ValueError(f"pod {key} is not bound to a node")
        st = self._pods.get(key)
        if st is not None:
            self._take_off(st)
        info = self._info_for(node).add_pod(pod)
        self._pods[key] = _PodState(info, node, assumed=False)
        self._assumed.discard(key)

    def update_pod(self, old: Obj | None, new: Obj) -> None:
        """A bound pod changed (or a relist saw it again): re-account it on its node."""
        self.add_pod(new)

    def remove_pod(self, pod: Obj | str) -> bool:
        """A bound pod was deleted (or finished): free its node's resources. False if unknown."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        st = self._pods.pop(key, None)
        if st is None:
            return False
        self._assumed.discard(key)
        self._take_off(st)
        return True

    def _take_off(self, st: _PodState) -> None:
        ni = self._nodes.get(st.node)
        if ni is not None:
            ni.remove_pod(st.info.key)
            self._drop_if_empty_placeholder(st.node)

    # ------------------------------------------------------------------ assumptions

    def assume(self, info: PodInfo, node: str) -> None:
        """Count ``info`` on ``node`` now, before its binding is confirmed."""
        key = info.key
        if key in self._pods:
            raise ValueError(f"pod {key} is already in the cache (on {self._pods[key].node})")
        ni = self._nodes.get(node)
        if ni is None or node in self._placeholders:
            raise KeyError(f"node {node} is not in the cache")
        ni.add_pod(info)
        self._pods[key] = _PodState(info, node, assumed=True)
        self._assumed.add(key)

    def finish_binding(self, key: str) -> None:
        """The bind call returned: the assumption now expires if the informer never confirms it."""
        st = self._pods.get(key)
        if st is not None and st.assumed:
            st.deadline = self.clock() + self.assume_ttl

    def forget(self, key: str) -> bool:
        """Drop an assumption (the bind failed). A pod the informer already confirmed is kept."""
        st = self._pods.get(key)
        if st is None or not st.assumed:
            return False
        del self._pods[key]
        self._assumed.discard(key)
        self._take_off(st)
        return True

    def cleanup_expired(self) -> list[str]:
        """Forget assumptions whose binding finished more than ``assume_ttl`` ago; returns their keys."""
        now = self.clock()
        expired = [k for k in self._assumed
                   if (d := self._pods[k].deadline) is not None and d <= now]
        for key in expired:
            self.forget(key)
        self.expired += len(expired)
        return expired

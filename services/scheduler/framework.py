"""The scheduler's plugin framework: resources, node state, plugin protocols and one scheduling cycle.

Why this exists: ``kubenats scheduler`` must place pods the way kube-scheduler does, and say why it
could not in kube-scheduler's words, because users read ``kubectl describe pod`` events and tools
parse them. This module is the pure core of that (no I/O, no asyncio) modelled on
``pkg/scheduler/framework``:

* :class:`Resources` and :func:`pod_requests` compute what a pod asks for exactly as upstream's
  ``resource.PodRequests`` (app containers summed, init containers as a running max, restartable
  "sidecar" init containers added, pod-level requests, pod overhead; limits stand in for missing
  requests, as the API server's defaulting does).
* :class:`NodeInfo` is one node plus the pods bound or assumed on it, with everything plugins read
  per cycle (requested resources, host ports, owner counts, taints) kept incrementally, so a
  scheduling cycle never re-parses a quantity.
* :class:`FilterPlugin` / :class:`ScorePlugin` are the extension points; :class:`CycleState` carries
  what is computed once per pod; :func:`schedule_one` runs filters and scores over the nodes and
  :func:`failure_message` renders upstream's ``FitError`` text
  (``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {...}. preemption: ...``).

Objects are the raw camelCase JSON dicts the API returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING
from itertools import chain
from operator import add
from typing import Any, Final, Protocol

from shared.api.quantity import parse_quantity
from shared.selectors import LabelSelector, SelectorError

__all__ = [
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_MILLI_CPU_REQUEST",
    "MAX_NODE_SCORE",
    "AffinityTerm",
    "CycleState",
    "FilterPlugin",
    "FilterResult",
    "NodeInfo",
    "Obj",
    "PodInfo",
    "Profile",
    "Resources",
    "ScheduleResult",
    "ScorePlugin",
    "Taint",
    "Unresolvable",
    "default_normalize",
    "failure_message",
    "is_scalar_resource",
    "milli_value",
    "num_feasible_nodes_to_find",
    "pod_key",
    "pod_requests",
    "quantity_value",
    "schedule_one",
]

Obj = dict[str, Any]

MAX_NODE_SCORE: Final = 100
# pkg/scheduler/util: what scoring assumes for a container that states no cpu / memory request.
DEFAULT_MILLI_CPU_REQUEST: Final = 100
DEFAULT_MEMORY_REQUEST: Final = 200 * 1024 * 1024
# numFeasibleNodesToFind in pkg/scheduler/schedule_one.go.
MIN_FEASIBLE_NODES_TO_FIND: Final = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: Final = 5

NO_NODES_AVAILABLE: Final = "no nodes available to schedule pods"
_NO_VICTIMS: Final = "No preemption victims found for incoming pod"
_NOT_HELPFUL: Final = "Preemption is not helpful for scheduling"

# ---------------------------------------------------------------- quantities

_MILLI_CACHE: dict[Any, int] = {}
_VALUE_CACHE: dict[Any, int] = {}
_CACHE_LIMIT: Final = 1 << 16


def milli_value(q: str | int | float) -> int:
    """``Quantity.MilliValue()``: the quantity in thousandths, rounded up ("100m" -> 100, "1" -> 1000)."""
    try:
        return _MILLI_CACHE[q]
    except KeyError:
        pass
    v = int((parse_quantity(q) * 1000).to_integral_value(rounding=ROUND_CEILING))
    if len(_MILLI_CACHE) < _CACHE_LIMIT:
        _MILLI_CACHE[q] = v
    return v


def quantity_value(q: str | int | float) -> int:
    """``Quantity.Value()``: the quantity as an integer, rounded up ("1Gi" -> 1073741824, "1m" -> 1)."""
    try:
        return _VALUE_CACHE[q]
    except KeyError:
        pass
    v = int(parse_quantity(q).to_integral_value(rounding=ROUND_CEILING))
    if len(_VALUE_CACHE) < _CACHE_LIMIT:
        _VALUE_CACHE[q] = v
    return v


def _amount(name: str, q: Any) -> int:
    return milli_value(q) if name == "cpu" else quantity_value(q)


def is_scalar_resource(name: str) -> bool:
    """Resources tracked besides cpu/memory/pods (``schedutil.IsScalarResourceName`` + ephemeral-storage).

    Extended resources (``example.com/gpu``), prefixed native ones (``kubernetes.io/...``), hugepages
    and attachable volumes; a bare unknown name such as ``foo`` is ignored, as upstream does.
    """
    return ("/" in name and not name.startswith("requests.")) or name.startswith(
        ("hugepages-", "attachable-volumes-")) or name == "ephemeral-storage"


# ---------------------------------------------------------------- resources


class Resources:
    """An amount of cpu (milli), memory (bytes), pods (count) and scalar resources (integers).

    Used for a pod's request (``pods`` is 1), a node's allocatable (``pods`` is the pod capacity)
    and the sum requested on a node (``pods`` is the number of pods there).
    """

    __slots__ = ("memory", "milli_cpu", "pods", "scalars")

    def __init__(self, milli_cpu: int = 0, memory: int = 0, pods: int = 0,
                 scalars: Mapping[str, int] | None = None) -> None:
        self.milli_cpu = milli_cpu
        self.memory = memory
        self.pods = pods
        self.scalars: dict[str, int] = dict(scalars) if scalars else {}

    @classmethod
    def from_list(cls, resource_list: Mapping[str, Any] | None) -> Resources:
        """Parse a ResourceList (``{"cpu": "2", "memory": "4Gi", "pods": "110", ...}``)."""
        r = cls()
        for name, q in (resource_list or {}).items():
            if name == "cpu":
                r.milli_cpu = milli_value(q)
            elif name == "memory":
                r.memory = quantity_value(q)
            elif name == "pods":
                r.pods = quantity_value(q)
            elif is_scalar_resource(name):
                r.scalars[name] = quantity_value(q)
        return r

    def copy(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, self.pods, self.scalars)

    def add(self, other: Resources) -> None:
        """Add ``other`` in place."""
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.pods += other.pods
        if other.scalars:
            s = self.scalars
            for k, v in other.scalars.items():
                s[k] = s.get(k, 0) + v

    def sub(self, other: Resources) -> None:
        """Subtract ``other`` in place (entries that reach zero are dropped from ``scalars``)."""
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.pods -= other.pods
        if other.scalars:
            s = self.scalars
            for k, v in other.scalars.items():
                left = s.get(k, 0) - v
                if left:
                    s[k] = left
                else:
                    s.pop(k, None)

    def insufficient(self, requested: Resources, allocatable: Resources) -> list[str]:
        """Why this request does not fit beside ``requested`` within ``allocatable``, as NodeResourcesFit words it.

        Reasons come in upstream's order: "Too many pods", cpu, memory, then scalar resources
        (ephemeral-storage first, then by name). A reason is :class:`Unresolvable` when the request
        alone exceeds allocatable (upstream marks that node UnschedulableAndUnresolvable).
        ``ignored`` resources of the plugin are applied by the caller.
        """
        out: list[str] = []
        if requested.pods + self.pods > allocatable.pods:
            out.append("Too many pods")
        if self.milli_cpu > 0 and self.milli_cpu > allocatable.milli_cpu - requested.milli_cpu:
            out.append(_reason("Insufficient cpu", self.milli_cpu > allocatable.milli_cpu))
        if self.memory > 0 and self.memory > allocatable.memory - requested.memory:
            out.append(_reason("Insufficient memory", self.memory > allocatable.memory))
        if self.scalars:
            names = sorted(self.scalars, key=lambda n: (n != "ephemeral-storage", n))
            for name in names:
                want = self.scalars[name]
                if want == 0:
                    continue
                alloc = allocatable.scalars.get(name, 0)
                if want > alloc - requested.scalars.get(name, 0):
                    out.append(_reason(f"Insufficient {name}", want > alloc))
        return out

    def fits(self, requested: Resources, allocatable: Resources) -> bool:
        """True when this request fits beside ``requested`` within ``allocatable``."""
        if (requested.pods + self.pods > allocatable.pods
                or (self.milli_cpu > 0 and self.milli_cpu > allocatable.milli_cpu - requested.milli_cpu)
                or (self.memory > 0 and self.memory > allocatable.memory - requested.memory)):
            return False
        for name, want in self.scalars.items():
            if want > 0 and want > allocatable.scalars.get(name, 0) - requested.scalars.get(name, 0):
                return False
        return True

    def as_tuple(self) -> tuple[int, int, int, tuple[tuple[str, int], ...]]:
        return self.milli_cpu, self.memory, self.pods, tuple(sorted(self.scalars.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self.as_tuple() == other.as_tuple()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        extra = f", scalars={self.scalars!r}" if self.scalars else ""
        return f"Resources(milli_cpu={self.milli_cpu}, memory={self.memory}, pods={self.pods}{extra})"


def _container_requests(c: Mapping[str, Any]) -> dict[str, int]:
    """A container's requests after API defaulting: a limit stands in for a missing request."""
    res = c.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    out = {name: _amount(name, q) for name, q in lim.items() if name not in req}
    for name, q in req.items():
        out[name] = _amount(name, q)
    return out


def _add_into(dst: dict[str, int], src: Mapping[str, int]) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + v


def _max_into(dst: dict[str, int], src: Mapping[str, int]) -> None:
    for k, v in src.items():
        cur = dst.get(k)
        if cur is None or v > cur:
            dst[k] = v


def _aggregate(app: list[dict[str, int]], init: list[tuple[dict[str, int], bool]]) -> dict[str, int]:
    """``resource.AggregateContainerRequests``: sum app containers, running max over init containers."""
    reqs: dict[str, int] = {}
    for c in app:
        _add_into(reqs, c)
    restartable: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c, sidecar in init:
        if sidecar:
            # A sidecar keeps running: it adds to the pod's total and to every later init step.
            _add_into(reqs, c)
            _add_into(restartable, c)
            step: Mapping[str, int] = restartable
        else:
            tmp = dict(c)
            _add_into(tmp, restartable)
            step = tmp
        _max_into(init_max, step)
    _max_into(reqs, init_max)
    return reqs


_POD_LEVEL_RESOURCES: Final = ("cpu", "memory")


def _pod_level_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    res = spec.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    out: dict[str, int] = {}
    for name in _POD_LEVEL_RESOURCES:
        if name in req:
            out[name] = _amount(name, req[name])
        elif name in lim:
            out[name] = _amount(name, lim[name])
    return out


def _requests_and_non_zero(pod: Mapping[str, Any]) -> tuple[Resources, int, int]:
    """The pod's requests, and the cpu/memory scoring uses (defaults for containers stating none)."""
    spec = pod.get("spec") or {}
    app = [_container_requests(c) for c in spec.get("containers") or ()]
    init = [(_container_requests(c), c.get("restartPolicy") == "Always") for c in spec.get("initContainers") or ()]
    pod_level = _pod_level_requests(spec)
    overhead = {name: _amount(name, q) for name, q in (spec.get("overhead") or {}).items()}

    def finish(reqs: dict[str, int]) -> dict[str, int]:
        reqs.update(pod_level)
        _add_into(reqs, overhead)
        return reqs

    reqs = finish(_aggregate(app, init))
    # getNonMissingContainerRequests: defaults for what neither the container nor the pod level states.
    defaults = {k: v for k, v in (("cpu", DEFAULT_MILLI_CPU_REQUEST), ("memory", DEFAULT_MEMORY_REQUEST))
                if k not in pod_level}
    if defaults and any(k not in c for c in chain(app, (c for c, _ in init)) for k in defaults):
        def fill(c: dict[str, int]) -> dict[str, int]:
            return {**defaults, **c}
        nz = finish(_aggregate([fill(c) for c in app], [(fill(c), s) for c, s in init]))
    else:
        nz = reqs
    r = Resources(reqs.get("cpu", 0), reqs.get("memory", 0), 1,
                  {k: v for k, v in reqs.items() if is_scalar_resource(k)})
    return r, nz.get("cpu", 0), nz.get("memory", 0)


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """What ``pod`` requests, as kube-scheduler computes it (``resource.PodRequests``).

    max(sum of app containers (+ sidecars), each init container (+ sidecars started before it)),
    with pod-level ``spec.resources`` overriding cpu/memory, plus ``spec.overhead``. A container
    with limits but no requests counts its limits. ``pods`` is 1.
    """
    return _requests_and_non_zero(pod)[0]


# ---------------------------------------------------------------- pods


def pod_key(pod: Mapping[str, Any]) -> str:
    """Identity of a pod in a NodeInfo: its uid, else ``namespace/name``."""
    meta = pod.get("metadata") or {}
    uid = meta.get("uid")
    if uid:
        return str(uid)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


class AffinityTerm:
    """A parsed PodAffinityTerm (``framework.AffinityTerm``); ``weight`` is set for preferred terms."""

    __slots__ = ("namespace_selector", "namespaces", "selector", "topology_key", "weight")

    def __init__(self, namespaces: frozenset[str], namespace_selector: LabelSelector,
                 selector: LabelSelector, topology_key: str, weight: int = 0) -> None:
        self.namespaces = namespaces
        self.namespace_selector = namespace_selector
        self.selector = selector
        self.topology_key = topology_key
        self.weight = weight

    @classmethod
    def parse(cls, owner_namespace: str, term: Mapping[str, Any], weight: int = 0) -> AffinityTerm:
        """Upstream's ``newAffinityTerm``: no namespaces and no namespaceSelector means the owner's namespace.

        An invalid selector matches nothing (upstream rejects the pod at admission anyway).
        """
        names = term.get("namespaces") or []
        ns_sel_raw = term.get("namespaceSelector")
        try:
            selector = LabelSelector.from_api(term.get("labelSelector"))
        except SelectorError:
            selector = LabelSelector.match_nothing()
        try:
            ns_selector = LabelSelector.from_api(ns_sel_raw)
        except SelectorError:
            ns_selector = LabelSelector.match_nothing()
        namespaces = frozenset(names) if (names or ns_sel_raw is not None) else frozenset((owner_namespace,))
        return cls(namespaces, ns_selector, selector, str(term.get("topologyKey") or ""), weight)

    def matches(self, namespace: str, labels: Mapping[str, str] | None,
                namespace_labels: Mapping[str, Mapping[str, str]] | None) -> bool:
        """``AffinityTerm.Matches``: namespace listed or selected, and labels selected.

        A non-empty namespaceSelector only selects namespaces present in ``namespace_labels`` (as
        upstream lists namespaces); ``{}`` selects every namespace.
        """
        if namespace not in self.namespaces:
            ns_sel = self.namespace_selector
            if ns_sel.nothing:
                return False
            if ns_sel.requirements:
                ns_labels = (namespace_labels or {}).get(namespace)
                if ns_labels is None or not ns_sel.matches(ns_labels):
                    return False
        return self.selector.matches(labels)


_EMPTY: Final[tuple[AffinityTerm, ...]] = ()


class PodInfo:
    """A pod plus what the scheduler derives from it once: requests, host ports, owner, tolerations."""

    __slots__ = ("_terms", "controller_uid", "has_affinity", "has_required_anti_affinity", "host_ports",
                 "key", "labels", "name", "namespace", "non_zero_cpu", "non_zero_memory", "pod", "requests",
                 "tolerations")

    def __init__(self, pod: Obj) -> None:
        self.pod = pod
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.key = pod_key(pod)
        self.name: str = meta.get("name") or ""
        self.namespace: str = meta.get("namespace") or "default"
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.requests, self.non_zero_cpu, self.non_zero_memory = _requests_and_non_zero(pod)
        self.host_ports = _host_ports(spec)
        self.controller_uid: str | None = next(
            (str(r.get("uid")) for r in meta.get("ownerReferences") or () if r.get("controller") and r.get("uid")),
            None)
        self.tolerations: tuple[tuple[str, str, str, str], ...] = tuple(
            (t.get("key") or "", t.get("operator") or "", t.get("value") or "", t.get("effect") or "")
            for t in spec.get("tolerations") or ())
        aff = spec.get("affinity") or {}
        pa, paa = aff.get("podAffinity"), aff.get("podAntiAffinity")
        self.has_affinity = pa is not None or paa is not None
        self.has_required_anti_affinity = bool(paa and paa.get("requiredDuringSchedulingIgnoredDuringExecution"))
        self._terms: tuple[tuple[AffinityTerm, ...], ...] | None = None

    def _parse_terms(self) -> tuple[tuple[AffinityTerm, ...], ...]:
        if self._terms is None:
            if not self.has_affinity:
                self._terms = (_EMPTY, _EMPTY, _EMPTY, _EMPTY)
            else:
                aff = (self.pod.get("spec") or {}).get("affinity") or {}
                pa = aff.get("podAffinity") or {}
                paa = aff.get("podAntiAffinity") or {}
                ns = self.namespace
                req = "requiredDuringSchedulingIgnoredDuringExecution"
                pref = "preferredDuringSchedulingIgnoredDuringExecution"

                def weighted(items: Iterable[Mapping[str, Any]]) -> tuple[AffinityTerm, ...]:
                    return tuple(AffinityTerm.parse(ns, w.get("podAffinityTerm") or {}, int(w.get("weight") or 0))
                                 for w in items)

                self._terms = (
                    tuple(AffinityTerm.parse(ns, t) for t in pa.get(req) or ()),
                    tuple(AffinityTerm.parse(ns, t) for t in paa.get(req) or ()),
                    weighted(pa.get(pref) or ()),
                    weighted(paa.get(pref) or ()),
                )
        return self._terms

    @property
    def required_affinity_terms(self) -> tuple[AffinityTerm, ...]:
        return self._parse_terms()[0]

    @property
    def required_anti_affinity_terms(self) -> tuple[AffinityTerm, ...]:
        return self._parse_terms()[1]

    @property
    def preferred_affinity_terms(self) -> tuple[AffinityTerm, ...]:
        return self._parse_terms()[2]

    @property
    def preferred_anti_affinity_terms(self) -> tuple[AffinityTerm, ...]:
        return self._parse_terms()[3]


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """``util.GetHostPorts``: (protocol, hostIP, hostPort) of app containers and sidecar init containers."""
    out: list[tuple[str, str, int]] = []
    sidecars = (c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always")
    for c in chain(sidecars, spec.get("containers") or ()):
        for p in c.get("ports") or ():
            hp = p.get("hostPort") or 0
            if hp > 0:
                out.append((p.get("protocol") or "TCP", p.get("hostIP") or "0.0.0.0", int(hp)))
    return tuple(out)


# ---------------------------------------------------------------- nodes


Taint = tuple[str, str, str]  # key, value, effect


class NodeInfo:
    """A node and the pods on it (bound or assumed), with the sums plugins read kept up to date.

    ``add_pod`` / ``remove_pod`` are O(containers) so a scheduler keeps one NodeInfo per node for
    its whole life; ``set_node`` re-reads the node object and keeps the pods.
    """

    __slots__ = ("_port_any", "allocatable", "free_memory", "free_milli_cpu", "free_pods", "labels", "name",
                 "no_schedule_taints", "node", "non_zero_cpu", "non_zero_memory", "owner_counts", "pod_infos",
                 "pods_with_affinity",
                 "pods_with_required_anti_affinity", "prefer_no_schedule_taints", "requested", "taints",
                 "unschedulable", "used_ports")

    def __init__(self, node: Obj, pods: Iterable[Obj] = ()) -> None:
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.pod_infos: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.used_ports: Counter[tuple[str, str, int]] = Counter()
        self._port_any: Counter[tuple[str, int]] = Counter()
        self.owner_counts: Counter[str] = Counter()
        self.set_node(node)
        for p in pods:
            self.add_pod(p)

    def set_node(self, node: Obj) -> None:
        """Replace the node object (labels, taints, allocatable...) keeping the pods."""
        self.node = node
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.name: str = meta.get("name") or ""
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints: tuple[Taint, ...] = tuple(
            (t.get("key") or "", t.get("value") or "", t.get("effect") or "") for t in spec.get("taints") or ())
        self.no_schedule_taints = tuple(t for t in self.taints if t[2] in ("NoSchedule", "NoExecute"))
        self.prefer_no_schedule_taints = tuple(t for t in self.taints if t[2] == "PreferNoSchedule")
        self.allocatable = Resources.from_list(status.get("allocatable") or status.get("capacity"))
        self._refresh_free()

    def _refresh_free(self) -> None:
        # allocatable - requested for cpu, memory and pods, kept in step for NodeResourcesFit's fast path.
        a, r = self.allocatable, self.requested
        self.free_milli_cpu = a.milli_cpu - r.milli_cpu
        self.free_memory = a.memory - r.memory
        self.free_pods = a.pods - r.pods

    # -- pods

    @property
    def pods(self) -> list[Obj]:
        return [pi.pod for pi in self.pod_infos.values()]

    @property
    def num_pods(self) -> int:
        return len(self.pod_infos)

    def has_pod(self, pod_or_key: Mapping[str, Any] | str) -> bool:
        return (pod_or_key if isinstance(pod_or_key, str) else pod_key(pod_or_key)) in self.pod_infos

    def add_pod(self, pod: Obj | PodInfo) -> PodInfo:
        """Account a bound or assumed pod; a pod already here (same key) is replaced."""
        pi = pod if isinstance(pod, PodInfo) else PodInfo(pod)
        if pi.key in self.pod_infos:
            self.remove_pod(pi.key)
        self.pod_infos[pi.key] = pi
        self._account(pi, 1)
        return pi

    def remove_pod(self, pod_or_key: Mapping[str, Any] | str) -> bool:
        """Forget a pod; False if it was not here."""
        key = pod_or_key if isinstance(pod_or_key, str) else pod_key(pod_or_key)
        pi = self.pod_infos.pop(key, None)
        if pi is None:
            return False
        self._account(pi, -1)
        return True

    def _account(self, pi: PodInfo, sign: int) -> None:
        if sign > 0:
            self.requested.add(pi.requests)
        else:
            self.requested.sub(pi.requests)
        self.non_zero_cpu += sign * pi.non_zero_cpu
        self.non_zero_memory += sign * pi.non_zero_memory
        self._refresh_free()
        for proto, ip, port in pi.host_ports:
            _bump(self.used_ports, (proto, ip, port), sign)
            _bump(self._port_any, (proto, port), sign)
        if pi.controller_uid is not None:
            _bump(self.owner_counts, pi.controller_uid, sign)
        for flag, index in ((pi.has_affinity, self.pods_with_affinity),
                            (pi.has_required_anti_affinity, self.pods_with_required_anti_affinity)):
            if flag:
                if sign > 0:
                    index[pi.key] = pi
                else:
                    index.pop(pi.key, None)

    def port_conflict(self, protocol: str, host_ip: str, port: int) -> bool:
        """``HostPortInfo.CheckConflict``: 0.0.0.0 conflicts with every IP, others with 0.0.0.0 and themselves."""
        if port <= 0:
            return False
        protocol = protocol or "TCP"
        host_ip = host_ip or "0.0.0.0"
        if host_ip == "0.0.0.0":
            return self._port_any.get((protocol, port), 0) > 0
        used = self.used_ports
        return used.get((protocol, "0.0.0.0", port), 0) > 0 or used.get((protocol, host_ip, port), 0) > 0

    def __repr__(self) -> str:
        return f"NodeInfo({self.name!r}, pods={self.num_pods}, requested={self.requested!r})"


def _bump(counter: Counter[Any], key: Any, sign: int) -> None:
    n = counter.get(key, 0) + sign
    if n > 0:
        counter[key] = n
    else:
        counter.pop(key, None)


# ---------------------------------------------------------------- plugins


class Unresolvable(str):
    """A failure reason preemption could not fix (upstream's ``UnschedulableAndUnresolvable`` status).

    It is a plain ``str`` for every other purpose (compares equal to the bare text); the marker
    only decides which preemption wording :func:`failure_message` uses for that node.
    """

    __slots__ = ()


def _reason(text: str, unresolvable: bool) -> str:
    return Unresolvable(text) if unresolvable else text


FilterResult = str | list[str] | None


class FilterPlugin(Protocol):
    """Decides whether a pod may run on a node.

    ``filter`` returns None when the node fits, else the reason (or several) worded exactly as
    kube-scheduler's plugin. A plugin may also define ``pre_filter(pod, state) -> bool``: called
    once per cycle, False skips the plugin for this pod (upstream's PreFilter ``Skip``).
    """

    @property
    def name(self) -> str: ...

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult: ...


class ScorePlugin(Protocol):
    """Ranks feasible nodes; the framework adds ``weight * score`` over plugins.

    ``score`` returns an int; optional ``normalize(scores: dict[node name, int]) -> dict`` maps a
    cycle's scores to 0..100 (otherwise scores must already be 0..100). Optional
    ``pre_score(pod, nodes, state) -> bool``: False skips the plugin for this pod.
    """

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int: ...


def default_normalize(scores: dict[str, int], reverse: bool = False,
                      max_priority: int = MAX_NODE_SCORE) -> dict[str, int]:
    """``helper.DefaultNormalizeScore``: scale to 0..max by the highest score (reversed if asked)."""
    max_count = max(scores.values(), default=0)
    if max_count <= 0:
        return dict.fromkeys(scores, max_priority) if reverse else dict(scores)
    if reverse:
        return {k: max_priority - max_priority * v // max_count for k, v in scores.items()}
    return {k: max_priority * v // max_count for k, v in scores.items()}


class CycleState:
    """What one scheduling cycle computes once for the pod being placed.

    ``pod_info`` (requests, tolerations, ports...), ``all_nodes`` (every NodeInfo, for inter-pod
    affinity), ``namespace_labels`` (namespace name -> labels, for namespaceSelector terms) and a
    key/value store plugins use for their own pre-computed data.
    """

    __slots__ = ("_data", "all_nodes", "namespace_labels", "pod", "pod_info", "requests")

    def __init__(self, pod: Obj, all_nodes: Sequence[NodeInfo] = (),
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
                 pod_info: PodInfo | None = None) -> None:
        self.pod = pod
        self.pod_info = pod_info or PodInfo(pod)
        self.requests = self.pod_info.requests
        self.all_nodes = all_nodes
        self.namespace_labels: Mapping[str, Mapping[str, str]] = namespace_labels or {}
        self._data: dict[str, object] = {}

    def write(self, key: str, value: object) -> None:
        self._data[key] = value

    def read(self, key: str) -> object:
        """The value written under ``key``; KeyError if none."""
        return self._data[key]

    def get(self, key: str, default: object = None) -> object:
        return self._data.get(key, default)


# ---------------------------------------------------------------- one scheduling cycle


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """Outcome of :func:`schedule_one`.

    ``node`` is the chosen node's name or None; ``failures`` maps each rejected node to the reasons
    of the first filter that rejected it; ``scores`` holds the weighted total of every scored node
    (empty when at most one node was feasible: upstream skips scoring then).
    """

    node: str | None
    failures: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)
    evaluated_nodes: int = 0
    feasible_nodes: int = 0


def num_feasible_nodes_to_find(num_all_nodes: int, percentage_of_nodes_to_score: int = 0) -> int:
    """``numFeasibleNodesToFind``: how many feasible nodes to look for before scoring.

    Below 100 nodes, all; ``percentage`` 0 means upstream's adaptive 50% - nodes/125 (at least 5%),
    and never fewer than 100 nodes.
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    percentage = percentage_of_nodes_to_score
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if percentage >= 100:
        return num_all_nodes
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def _per_node_filter(fn: Callable[[Obj, NodeInfo, CycleState], FilterResult]) -> _BatchFilter:
    def batch(pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[FilterResult]:
        return [fn(pod, ni, state) for ni in nodes]
    return batch


_BatchFilter = Callable[[Obj, Sequence[NodeInfo], CycleState], list[FilterResult]]
_FEASIBILITY_CHUNK: Final = 64


def schedule_one(pod: Obj, nodes: Sequence[NodeInfo], filters: Sequence[FilterPlugin],
                 scores: Sequence[ScorePlugin], *, state: CycleState | None = None,
                 num_to_find: int | None = None, start_index: int = 0,
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None) -> ScheduleResult:
    """Filter ``nodes`` for ``pod``, score the feasible ones, pick the best.

    Nodes are taken in order from ``start_index`` (wrapping) and filtering stops once
    ``num_to_find`` feasible nodes are known (default: all), as upstream's
    ``findNodesThatPassFilters``. Each rejected node reports the reasons of the first filter, in
    profile order, that rejected it. Plugins may offer ``filter_all`` / ``score_all`` (the same
    answers for a list of nodes at once, to save Python calls). The winner has the highest
    weighted score; ties go to the node with fewest pods, then the smallest name, so the choice is
    deterministic yet still spreads equal nodes.
    """
    n = len(nodes)
    if n == 0:
        return ScheduleResult(None)
    if state is None:
        state = CycleState(pod, nodes, namespace_labels)
    want = n if num_to_find is None else max(1, min(num_to_find, n))

    steps: list[_BatchFilter] = []
    for fp in filters:
        pre = getattr(fp, "pre_filter", None)
        if pre is not None and pre(pod, state) is False:
            continue
        batch = getattr(fp, "filter_all", None)
        steps.append(batch if batch is not None else _per_node_filter(fp.filter))

    start = start_index % n
    order = [*nodes[start:], *nodes[:start]]
    failures: dict[str, list[str]] = {}
    feasible: list[NodeInfo] = []
    evaluated = pos = 0
    while pos < n and len(feasible) < want:
        need = want - len(feasible)
        chunk = order[pos:pos + max(need, _FEASIBILITY_CHUNK)]
        alive = chunk
        chunk_failures: dict[str, list[str]] = {}
        for step in steps:
            results = step(pod, alive, state)
            if results.count(None) == len(results):
                continue
            keep: list[NodeInfo] = []
            for ni, r in zip(alive, results, strict=True):
                if r is None:
                    keep.append(ni)
                else:
                    chunk_failures[ni.name] = [r] if isinstance(r, str) else list(r)
            alive = keep
            if not alive:
                break
        if len(alive) > need:
            # Enough feasible nodes: nodes after the last one needed count as not evaluated.
            last = chunk.index(alive[need - 1])
            for ni in chunk[last + 1:]:
                chunk_failures.pop(ni.name, None)
            alive = alive[:need]
            evaluated = pos + last + 1
        else:
            evaluated = pos + len(chunk)
        feasible.extend(alive)
        failures.update(chunk_failures)
        pos += len(chunk)

    if not feasible:
        return ScheduleResult(None, failures, {}, evaluated, 0)
    if len(feasible) == 1:
        return ScheduleResult(feasible[0].name, failures, {}, evaluated, 1)

    names = [ni.name for ni in feasible]
    totals = [0] * len(feasible)
    for sp in scores:
        pre_score = getattr(sp, "pre_score", None)
        if pre_score is not None and pre_score(pod, feasible, state) is False:
            continue
        batch_score = getattr(sp, "score_all", None)
        if batch_score is not None:
            raw: list[int] = batch_score(pod, feasible, state)
        else:
            fn_score = sp.score
            raw = [fn_score(pod, ni, state) for ni in feasible]
        normalize = getattr(sp, "normalize", None)
        if normalize is not None:
            normalized = normalize(dict(zip(names, raw, strict=True)))
            raw = [normalized[name] for name in names]
        w = sp.weight
        totals = list(map(add, totals, raw)) if w == 1 else [t + w * s for t, s in zip(totals, raw, strict=True)]

    best_ni = feasible[0]
    best_total = totals[0]
    for i in range(1, len(feasible)):
        t = totals[i]
        if t < best_total:
            continue
        ni = feasible[i]
        if t > best_total or ni.requested.pods < best_ni.requested.pods or (
                ni.requested.pods == best_ni.requested.pods and ni.name < best_ni.name):
            best_ni, best_total = ni, t
    return ScheduleResult(best_ni.name, failures, dict(zip(names, totals, strict=True)), evaluated, len(feasible))


@dataclass
class Profile:
    """A scheduler profile: ordered filters, weighted scorers, and the node-sampling state.

    ``percentage_of_nodes_to_score`` is the KubeSchedulerConfiguration field (0 = adaptive, 100 =
    every node); the start index rotates between cycles as upstream's ``nextStartNodeIndex``.
    """

    filters: Sequence[FilterPlugin]
    scores: Sequence[ScorePlugin]
    percentage_of_nodes_to_score: int = 0
    next_start_node_index: int = 0

    def schedule(self, pod: Obj, nodes: Sequence[NodeInfo],
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
                 pod_info: PodInfo | None = None) -> ScheduleResult:
        """One cycle for ``pod`` over ``nodes`` (all of them); pass ``pod_info`` to reuse it for ``add_pod``."""
        if not nodes:
            return ScheduleResult(None)
        state = CycleState(pod, nodes, namespace_labels, pod_info)
        result = schedule_one(pod, nodes, self.filters, self.scores, state=state,
                              num_to_find=num_feasible_nodes_to_find(len(nodes), self.percentage_of_nodes_to_score),
                              start_index=self.next_start_node_index)
        self.next_start_node_index = (self.next_start_node_index + result.evaluated_nodes) % len(nodes)
        return result


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{v} {k}" for k, v in counts.items()))


def failure_message(result: ScheduleResult, total_nodes: int, *, pod: Mapping[str, Any] | None = None,
                    preemption: bool = True) -> str:
    """The FailedScheduling message kube-scheduler gives (``FitError.Error()``).

    ``0/N nodes are available: <count> <reason>, ....`` with one entry per distinct reason, each
    entry "count reason" and the entries sorted as strings (Go ``sort.Strings``), then what the
    DefaultPreemption PostFilter adds when it finds nothing to evict, which is always the case
    here because kubenats never preempts: nodes failing only resolvable filters count as
    "No preemption victims found for incoming pod", the rest as "Preemption is not helpful for
    scheduling"; a pod with ``preemptionPolicy: Never`` gets "not eligible due to
    preemptionPolicy=Never.". ``preemption=False`` gives the message of a profile without
    PostFilter plugins (no suffix).
    """
    if total_nodes <= 0:
        return NO_NODES_AVAILABLE
    counts: Counter[str] = Counter()
    resolvable = 0
    for reasons in result.failures.values():
        for r in reasons:
            counts[str(r)] += 1
        if not any(isinstance(r, Unresolvable) for r in reasons):
            resolvable += 1
    msg = f"0/{total_nodes} nodes are available:"
    if counts:
        msg += f" {_histogram(counts)}."
    if not preemption:
        return msg
    if pod is not None and (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return msg + " preemption: not eligible due to preemptionPolicy=Never."
    post: Counter[str] = Counter()
    if resolvable:
        post[_NO_VICTIMS] = resolvable
    if total_nodes - resolvable > 0:
        post[_NOT_HELPFUL] = total_nodes - resolvable
    return msg + f" preemption: 0/{total_nodes} nodes are available: {_histogram(post)}."

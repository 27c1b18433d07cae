"""The DaemonSet controller's decisions, pure (pkg/controller/daemon's daemon_controller.go and update.go).

- Which nodes a daemon pod belongs on: `should_run` builds the pod a node would get (the
  template with the daemon tolerations) and checks node name, nodeSelector, required node
  affinity and NoSchedule/NoExecute taints (`taints.should_run_on`).
- What to do on one node (`node_actions`, podsShouldBeOnNode): create the missing pod, delete
  failed ones (with a per-node backoff) and surplus ones (the oldest stays), delete all when
  the node no longer fits.
- The rolling update (`rolling_update`): with maxSurge = 0 old pods are deleted while at most
  maxUnavailable pods are unavailable (the manage step then creates their replacements); with
  maxSurge > 0 new pods are created next to old ones and the old ones go once the new ones are
  available.
- The status counts.

Revisions: upstream records each template in a ControllerRevision and labels pods with its
`controller-revision-hash`. kubenats has no ControllerRevision resource, so the hash is computed
from the template itself (deployment_util.compute_hash, with status.collisionCount) and only the
label is kept: a pod is up to date when its label equals the hash of the current template.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .controller_utils import Obj, is_deleting, is_pod_available, is_pod_ready, meta, parse_time, spec, status
from .deployment_util import compute_hash, value_from_int_or_percent
from .taints import add_daemon_pod_tolerations, node_name_affinity, should_run_on, target_node_name

HASH_LABEL = "controller-revision-hash"
FAILED_BACKOFF_INITIAL = 1.0
FAILED_BACKOFF_MAX = 900.0


def template_hash(ds: Obj) -> str:
    collision = status(ds).get("collisionCount")
    return compute_hash(spec(ds).get("template"), int(collision) if collision is not None else None)


def pod_template(ds: Obj, hash_: str) -> Obj:
    """CreatePodTemplate: the template with the daemon tolerations and the hash label."""
    t = copy.deepcopy(spec(ds).get("template") or {})
    add_daemon_pod_tolerations(t.setdefault("spec", {}))
    labels = t.setdefault("metadata", {}).setdefault("labels", {})
    labels[HASH_LABEL] = hash_
    return t


def template_for_node(template: Obj, node_name: str) -> Obj:
    """The template of the pod for one node: required node affinity on `metadata.name`."""
    t = copy.deepcopy(template)
    t["spec"]["affinity"] = node_name_affinity(t["spec"].get("affinity"), node_name)
    return t


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run, should continue running)."""
    pod = {"metadata": copy.deepcopy((spec(ds).get("template") or {}).get("metadata") or {}),
           "spec": copy.deepcopy((spec(ds).get("template") or {}).get("spec") or {})}
    pod["spec"]["nodeName"] = meta(node).get("name")
    add_daemon_pod_tolerations(pod["spec"])
    return should_run_on(pod, node)


def nodes_to_pods(pods: Sequence[Obj], include_deleted_terminal: bool) -> dict[str, list[Obj]]:
    """getNodesToDaemonPods: pods by the node they are bound or meant to (GetTargetNodeName)."""
    out: dict[str, list[Obj]] = {}
    for pod in pods:
        if not include_deleted_terminal and is_deleting(pod) and status(pod).get("phase") in ("Succeeded", "Failed"):
            continue
        node = target_node_name(pod)
        if node:
            out.setdefault(node, []).append(pod)
    return out


def _by_creation_and_phase(a: Obj, b: Obj) -> int:
    """podByCreationTimestampAndPhase: scheduled first, then older, then by name."""
    na, nb = bool(spec(a).get("nodeName")), bool(spec(b).get("nodeName"))
    if na != nb:
        return -1 if na else 1
    ta = parse_time(meta(a).get("creationTimestamp")) or 0.0
    tb = parse_time(meta(b).get("creationTimestamp")) or 0.0
    if ta != tb:
        return -1 if ta < tb else 1
    return -1 if meta(a).get("name", "") < meta(b).get("name", "") else 1


def sort_pods(pods: Sequence[Obj]) -> list[Obj]:
    return sorted(pods, key=functools.cmp_to_key(_by_creation_and_phase))


def is_pod_updated(pod: Obj, hash_: str) -> bool:
    return bool(hash_) and (meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_


@dataclass
class FailedBackoff:
    """flowcontrol.Backoff for failed daemon pods, per DaemonSet and node: 1 s doubling to 15 min."""

    clock: Callable[[], float] = time.monotonic
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (delay, last update)

    def in_backoff(self, key: str) -> float:
        """Seconds left before the next deletion is allowed (0: allowed)."""
        entry = self.entries.get(key)
        if entry is None:
            return 0.0
        delay, at = entry
        return max(0.0, at + delay - self.clock())

    def next(self, key: str) -> None:
        entry = self.entries.get(key)
        now = self.clock()
        if entry is None or now - entry[1] > 2 * FAILED_BACKOFF_MAX:
            self.entries[key] = (FAILED_BACKOFF_INITIAL, now)
        else:
            self.entries[key] = (min(entry[0] * 2, FAILED_BACKOFF_MAX), now)


@dataclass
class NodeActions:
    create: bool = False
    delete: list[Obj] = field(default_factory=list)
    failed: int = 0
    retry_after: float | None = None
    events: list[str] = field(default_factory=list)


def node_actions(ds: Obj, node: Obj, pods: list[Obj], hash_: str, surge: bool, backoff: FailedBackoff,
                 now: float) -> NodeActions:
    """podsShouldBeOnNode."""
    run, keep = should_run(ds, node)
    out = NodeActions()
    if run and not pods:
        out.create = True
        return out
    if not keep:
        out.delete = list(pods)
        return out
    node_name = meta(node).get("name", "")
    running: list[Obj] = []
    for pod in pods:
        if is_deleting(pod):
            continue
        if status(pod).get("phase") == "Failed":
            out.failed += 1
            key = f"{meta(ds).get('uid')}/{node_name}"
            left = backoff.in_backoff(key)
            if left > 0:
                out.retry_after = left if out.retry_after is None else min(out.retry_after, left)
                continue
            backoff.next(key)
            out.events.append(f"Found failed daemon pod {meta(pod).get('namespace')}/{meta(pod).get('name')} "
                              f"on node {node_name}, will try to kill it")
            out.delete.append(pod)
        else:
            running.append(pod)
    running = sort_pods(running)
    if not surge:
        out.delete.extend(running[1:])
        return out
    if not running:
        out.create = run
        return out
    oldest_new = oldest_old = None
    for pod in running:
        updated = is_pod_updated(pod, hash_)
        if updated and oldest_new is None:
            oldest_new = pod
        elif not updated and oldest_old is None:
            oldest_old = pod
        else:
            out.delete.append(pod)
    if oldest_new is not None and oldest_old is not None:
        min_ready = int(spec(ds).get("minReadySeconds") or 0)
        if not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now):
            out.delete.append(oldest_old)
    return out


def _rolling(ds: Obj) -> Obj:
    strategy = spec(ds).get("updateStrategy") or {}
    r: Obj = strategy.get("rollingUpdate") or {}
    return r


def is_rolling_update(ds: Obj) -> bool:
    return bool((spec(ds).get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def surge_count(ds: Obj, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    return value_from_int_or_percent(_rolling(ds).get("maxSurge") or 0, desired, True)


def unavailable_count(ds: Obj, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    value = _rolling(ds).get("maxUnavailable")
    return value_from_int_or_percent(1 if value is None else value, desired, True)


def _updated_on_node(pods: list[Obj], hash_: str) -> tuple[Obj | None, Obj | None, bool]:
    """findUpdatedPodsOnNode: (new pod, old pod, ok); not ok when a node has two of a kind."""
    new = old = None
    for pod in pods:
        if is_deleting(pod):
            continue
        if is_pod_updated(pod, hash_):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update(ds: Obj, node_pods: dict[str, list[Obj]], nodes: dict[str, Obj], hash_: str,
                   desired: int, now: float) -> tuple[list[Obj], list[str]]:
    """rollingUpdate: (old pods to delete, nodes to create a new pod on)."""
    max_surge = surge_count(ds, desired)
    max_unavailable = unavailable_count(ds, desired)
    if desired > 0 and max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    min_ready = int(spec(ds).get("minReadySeconds") or 0)

    def available(p: Obj) -> bool:
        return is_pod_available(p, min_ready, now)

    def fits(name: str) -> bool:
        node = nodes.get(name)
        return node is not None and should_run(ds, node)[0]

    if max_surge == 0:
        unavailable, replace, candidates = 0, [], []
        for name in sorted(node_pods):
            new, old, ok = _updated_on_node(node_pods[name], hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # the manage step sorts this node out
            elif new is not None:
                unavailable += 0 if available(new) else 1
            elif old is not None and not available(old):
                replace.append(old)
            elif unavailable < max_unavailable and old is not None:
                candidates.append(old)
        room = min(max(max_unavailable - unavailable, 0), len(candidates))
        return replace + candidates[:room], []
    to_delete: list[Obj] = []
    not_fitting: list[Obj] = []
    allowed: list[str] = []
    candidates_n: list[str] = []
    surging = available_n = 0
    for name in sorted(node_pods):
        new, old, ok = _updated_on_node(node_pods[name], hash_)
        if not ok:
            surging += 1
            continue
        if (old is not None and available(old)) or (old is None and new is not None and available(new)):
            available_n += 1
        if old is None:
            continue
        if new is None:
            if not available(old):
                if fits(name):
                    allowed.append(name)
                else:
                    to_delete.append(old)
            elif not fits(name):
                not_fitting.append(old)
            elif surging < max_surge:
                candidates_n.append(name)
        elif not available(new):
            surging += 1
        else:
            to_delete.append(old)
    deletable = min(max(available_n - desired, 0), len(not_fitting))
    to_delete.extend(not_fitting[:deletable])
    room = min(max(max_surge - surging, 0), len(candidates_n))
    return to_delete, allowed + candidates_n[:room]


def calculate_status(ds: Obj, node_list: Sequence[Obj], node_pods: dict[str, list[Obj]], hash_: str,
                     now: float) -> Obj:
    """updateDaemonSetStatus's counts (the oldest pod of a node speaks for it)."""
    desired = current = misscheduled = ready = available = updated = 0
    min_ready = int(spec(ds).get("minReadySeconds") or 0)
    for node in node_list:
        run, _ = should_run(ds, node)
        pods = node_pods.get(meta(node).get("name", ""), [])
        if not run:
            misscheduled += 1 if pods else 0
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        pod = sort_pods(pods)[0]
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
        if is_pod_updated(pod, hash_):
            updated += 1
    return {"desiredNumberScheduled": desired, "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
            "numberReady": ready, "numberAvailable": available, "updatedNumberScheduled": updated,
            "numberUnavailable": desired - available}

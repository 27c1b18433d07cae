"""The scheduler's pod informer transform: keep what scheduling reads, drop the rest.

Why this exists: the scheduler caches every pod of the cluster (bound pods are accounted on
their nodes, pending ones are queued), and a pod as the API returns it is mostly fields no plugin
reads (container images, commands, env, volumes, status details). At 30,000 pods the full
objects were most of the scheduler's memory. `strip_pod` is passed as the pod informer's
``transform`` (client-go's ``SetTransform``), so the cache, the queue, the NodeInfos and every
handler only ever see the stripped pod.

What is kept, and who reads it (grep before adding a plugin that reads anything else, and add
the field here with it; ``tests/scheduler/test_pod_transform.py`` checks that every reader
answers the same for a full and a stripped pod):

* ``metadata``: ``name``, ``namespace`` (keys, events, affinity namespaces), ``uid`` (pod key,
  bind), ``resourceVersion`` (informer ordering, the guarded PodScheduled patch, event refs),
  ``labels`` (inter-pod affinity, requeue on relabel), the controller ``ownerReferences`` entry
  (``uid``/``controller``: SelectorSpread), ``deletionTimestamp`` (never schedule a deleting pod);
* ``spec``: ``nodeName``, ``schedulerName``, ``priority`` (queue order), ``preemptionPolicy``
  (FailedScheduling text), ``nodeSelector`` and ``affinity`` (NodeAffinity, InterPodAffinity),
  ``tolerations`` (TaintToleration, NodeUnschedulable), ``resources`` and ``overhead`` (pod-level
  requests), and per container (one entry each, the count matters for the non-zero request
  defaults) its ``resources`` and the ``ports`` with a ``hostPort`` (NodePorts); init containers
  also keep ``restartPolicy`` (sidecars);
* ``status``: ``phase`` (terminal pods free their node) and the ``PodScheduled`` condition (the
  Unschedulable message is only rewritten when it changed).

Everything else is dropped: ``managedFields``, annotations, ``generateName``, finalizers, other
owner references, ``creationTimestamp``, container names, images, commands, args, env,
volumeMounts, probes, lifecycle, ``volumes``, ``securityContext``, DNS and service account
settings, the other conditions, container statuses, IPs, ``startTime``, ``qosClass``...

Values that repeat across pods (labels, the owner, tolerations, the container list, the
PodScheduled condition) are shared between them (`shared.informer.SharedValues`) and strings
are interned, so 30,000 pods of a few workloads hold one copy of each. Cached pods are therefore
strictly read-only. Never write one back to the API as a whole either: the scheduler only binds
and patches its own condition.
"""

from __future__ import annotations

from typing import Any, Final

from shared.informer import SharedValues

__all__ = ["SHARED", "strip_pod"]

Obj = dict[str, Any]

SHARED = SharedValues()  # equal sub-objects of different pods are one object (they repeat per workload)
_SPEC_SHARED: Final = ("nodeName", "schedulerName", "priority", "preemptionPolicy", "nodeSelector", "affinity",
                       "tolerations", "resources", "overhead")
_META_SHARED: Final = ("namespace", "labels", "deletionTimestamp")


def _container(c: Obj, init: bool) -> Obj:
    out: Obj = {}
    if "resources" in c:
        out["resources"] = c["resources"]
    ports = [p for p in c.get("ports") or () if p.get("hostPort")]
    if ports:
        out["ports"] = ports
    if init and "restartPolicy" in c:
        out["restartPolicy"] = c["restartPolicy"]
    return out


def strip_pod(pod: Obj) -> Obj:
    """The pod as the scheduler caches it (a new dict; ``pod`` is left as it was)."""
    meta = pod.get("metadata") or {}
    m = SHARED.pick(meta, ("name", "uid", "resourceVersion"), _META_SHARED)
    controller = [{"uid": r.get("uid"), "controller": True}
                  for r in meta.get("ownerReferences") or () if r.get("controller") and r.get("uid")]
    if controller:
        m["ownerReferences"] = SHARED(controller[:1])

    spec = pod.get("spec") or {}
    s = SHARED.pick(spec, (), _SPEC_SHARED)
    s["containers"] = SHARED([_container(c, False) for c in spec.get("containers") or ()])
    if spec.get("initContainers"):
        s["initContainers"] = SHARED([_container(c, True) for c in spec["initContainers"]])

    out: Obj = {"metadata": m, "spec": s}
    status = pod.get("status") or {}
    st: Obj = {}
    if "phase" in status:
        st["phase"] = SHARED(status["phase"])
    scheduled = [c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"]
    if scheduled:
        st["conditions"] = SHARED(scheduled)
    if st:
        out["status"] = SHARED(st)  # a phase and a condition: the same for the pods bound in one second
    return out

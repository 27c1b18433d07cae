"""The controller manager's pod informer transform: keep what the controllers read, drop the rest.

Why this exists: the controller manager holds one shared pod informer (`base.SharedInformers`)
with every pod of the cluster, and a pod as the API returns it is mostly fields no controller
reads (images, commands, env, volumes, container status details). At 30,000 pods the full
objects were most of the process's memory. `strip_pod` is the pod informer's ``transform``
(client-go's ``SetTransform``), so every controller, index and handler sees the stripped pod.

What is kept, and who reads it (grep before a controller reads anything else of a cached pod,
and add the field here with it; ``tests/controllers/test_pod_transform.py`` checks that every
helper answers the same for a full and a stripped pod):

* ``apiVersion``, ``kind``: the involvedObject of Events recorded about a pod;
* ``metadata``: ``name``, ``namespace``, ``uid``, ``resourceVersion`` (keys, deletes with a uid
  precondition, patches, update filtering); ``creationTimestamp`` (deletion ranking, DaemonSet
  pod order, a Job pod's finish time); ``deletionTimestamp`` (active / terminating);
  ``labels`` (selectors, pod-template and revision hashes, the Job index label);
  ``ownerReferences`` whole (controller refs, adoption, the garbage collector's owner graph and
  blockOwnerDeletion); ``finalizers`` (the Job tracking finalizer, the garbage collector); of
  the annotations only ``controller.kubernetes.io/pod-deletion-cost`` (ReplicaSet scale-down)
  and ``batch.kubernetes.io/job-completion-index`` (Indexed Jobs);
* ``spec``: ``nodeName`` (node index, eviction, endpoints, ranking), ``tolerations`` whole
  (taint eviction, tolerationSeconds), ``affinity.nodeAffinity`` (a DaemonSet pod's target
  node), ``restartPolicy`` (endpoints of finished pods), ``hostname`` and ``subdomain``
  (endpoint hostnames); per container ``name`` and ``ports`` (named target ports); per init
  container also ``restartPolicy`` (sidecars: ports and restart counts);
* ``status``: ``phase``; the ``Ready`` condition (readiness, availability, NotReady marking);
  ``podIP`` and ``podIPs`` (endpoints); per container status ``name``, ``restartCount``
  (ranking, the Job backoff limit) and a terminated state's ``finishedAt``, ``exitCode`` and
  ``reason`` (the Job failure backoff).

Everything else is dropped: ``managedFields``, other annotations (last-applied-configuration
and the like), ``generateName``, images, commands, args, env, volumeMounts, resources, probes,
``volumes``, scheduling fields, the other conditions, container ids, images and running or
waiting states, ``hostIP(s)``, ``startTime``, ``qosClass``...

Values that repeat across pods (labels, owner references, tolerations, the container list, a
Ready condition, running container statuses...) are shared between them
(`shared.informer.SharedValues`) and strings are interned, so 30,000 pods of a few workloads
hold one copy of each. Cached pods are therefore strictly read-only. Never write one back to the
API as a whole either (an update would erase all that was dropped): patch what changes.
"""

from __future__ import annotations

from typing import Any, Final

from shared.informer import SharedValues

__all__ = ["KEPT_ANNOTATIONS", "SHARED", "strip_pod"]

Obj = dict[str, Any]

KEPT_ANNOTATIONS: Final = frozenset({"controller.kubernetes.io/pod-deletion-cost",
                                     "batch.kubernetes.io/job-completion-index"})
SHARED = SharedValues()  # equal sub-objects of different pods are one object (they repeat per workload)
_META_SHARED: Final = ("namespace", "creationTimestamp", "deletionTimestamp", "labels", "ownerReferences",
                       "finalizers")
_SPEC_SHARED: Final = ("nodeName", "tolerations", "restartPolicy", "hostname", "subdomain")
_KEPT_CONDITIONS: Final = frozenset({"Ready"})
_TERMINATED_KEYS: Final = ("finishedAt", "exitCode", "reason")


def _container(c: Obj, init: bool) -> Obj:
    out: Obj = {}
    if "name" in c:
        out["name"] = c["name"]
    if c.get("ports"):
        out["ports"] = c["ports"]
    if init and "restartPolicy" in c:
        out["restartPolicy"] = c["restartPolicy"]
    return out


def _container_status(cs: Obj) -> Obj:
    out: Obj = {"name": cs.get("name") or "", "restartCount": cs.get("restartCount") or 0}
    terminated = (cs.get("state") or {}).get("terminated")
    if isinstance(terminated, dict):
        out["state"] = {"terminated": {k: terminated[k] for k in _TERMINATED_KEYS if k in terminated}}
    return out


def strip_pod(pod: Obj) -> Obj:
    """The pod as the controller manager caches it (a new dict; ``pod`` is left as it was)."""
    meta = pod.get("metadata") or {}
    m = SHARED.pick(meta, ("name", "uid", "resourceVersion"), _META_SHARED)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in KEPT_ANNOTATIONS}
    if annotations:
        m["annotations"] = SHARED(annotations)

    spec = pod.get("spec") or {}
    s = SHARED.pick(spec, (), _SPEC_SHARED)
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity")
    if node_affinity:
        s["affinity"] = SHARED({"nodeAffinity": node_affinity})
    s["containers"] = SHARED([_container(c, False) for c in spec.get("containers") or ()])
    if spec.get("initContainers"):
        s["initContainers"] = SHARED([_container(c, True) for c in spec["initContainers"]])

    out: Obj = {"apiVersion": SHARED(pod.get("apiVersion") or "v1"), "kind": SHARED(pod.get("kind") or "Pod"),
                "metadata": m, "spec": s}
    status = pod.get("status") or {}
    st: Obj = {}
    if "phase" in status:
        st["phase"] = SHARED(status["phase"])
    conditions = [c for c in status.get("conditions") or () if c.get("type") in _KEPT_CONDITIONS]
    if conditions:
        st["conditions"] = SHARED(conditions)
    for k in ("podIP", "podIPs"):  # unique to the pod: not worth sharing
        if k in status:
            st[k] = status[k]
    for k in ("initContainerStatuses", "containerStatuses"):
        if status.get(k):
            st[k] = SHARED([_container_status(cs) for cs in status[k]])
    if st:
        out["status"] = st
    return out

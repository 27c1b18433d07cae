"""Kubernetes defaulting for raw API objects, so kubenats stores what Kubernetes stores.

Why this exists: a real apiserver fills in many fields before persisting an
object (``pkg/apis/*/v1/defaults.go``, registry strategies' ``PrepareForCreate``
and the default admission plugins).  kubectl diffs/apply, the Python client and
our own controllers, scheduler and kubelet all rely on those values being
present (``imagePullPolicy``, ``restartPolicy``, Service ``targetPort``,
Deployment ``strategy``, pod ``qosClass``...).  This module reproduces that
for the kinds kubenats serves, on the camelCase dicts the API receives.

Public API:

* ``apply_defaults(resource, obj, *, create=True)``: in place.  With
  ``create=True`` it also does what Kubernetes only does when an object is
  created (pod status reset to Pending + qosClass, the pod admission plugins
  DefaultTolerationSeconds / Priority / ServiceAccount, the namespace
  ``kubernetes`` finalizer, empty controller statuses); pass ``create=False``
  on updates so, e.g., a finalized namespace does not get its finalizer back.
* ``apply_job_selector(obj, uid)``: the Job selector/label generation that
  Kubernetes does at create time when ``spec.manualSelector`` is not true.
* ``pod_qos_class(pod)``: Kubernetes' QoS class computation.

Behaviour follows Kubernetes ~v1.31 with default feature gates.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from shared.api.quantity import canonical_quantity, parse_quantity

__all__ = ["apply_defaults", "apply_job_selector", "pod_qos_class"]

_RBAC_GROUP: Final = "rbac.authorization.k8s.io"
_MAX_INT32: Final = 2**31 - 1
_BUILTIN_PRIORITY_CLASSES: Final = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}
_VOLUME_SOURCE_KEYS: Final = frozenset({
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
    "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs", "quobyte", "downwardAPI", "fc",
    "flexVolume", "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk",
    "storageos", "projected", "scaleIO", "csi", "ephemeral", "image",
})


def _dict(parent: dict[str, Any], name: str) -> dict[str, Any]:
    """parent[name] as a dict, creating it when missing or null."""
    value = parent.get(name)
    if not isinstance(value, dict):
        value = {}
        parent[name] = value
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _setdefault(d: dict[str, Any], name: str, value: Any) -> None:
    if d.get(name) in (None, ""):
        d[name] = value


def _image_tag(image: str) -> str:
    """The tag parsers.ParseImageName would return ("latest" when neither tag nor digest)."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _resource_list(res: Any) -> None:
    """SetDefaults_ResourceList: round up to 1m and store in canonical form."""
    if not isinstance(res, dict):
        return
    for name, q in list(res.items()):
        if isinstance(q, str | int | float) and not isinstance(q, bool):
            try:
                res[name] = canonical_quantity(q, round_to_milli=True)
            except ValueError:
                pass  # validation reports it


def _http_get(action: Any) -> None:
    if isinstance(action, dict):
        _setdefault(action, "path", "/")
        _setdefault(action, "scheme", "HTTP")


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for name, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if not probe.get(name):
            probe[name] = value
    _http_get(probe.get("httpGet"))
    grpc = probe.get("grpc")
    if isinstance(grpc, dict) and grpc.get("service") is None:
        grpc["service"] = ""


def _container(c: dict[str, Any]) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = "Always" if _image_tag(str(c.get("image") or "")) == "latest" else "IfNotPresent"
    _setdefault(c, "terminationMessagePath", "/dev/termination-log")
    _setdefault(c, "terminationMessagePolicy", "File")
    for port in _dicts(c.get("ports")):
        _setdefault(port, "protocol", "TCP")
    for env in _dicts(c.get("env")):
        field_ref = env.get("valueFrom", {}).get("fieldRef") if isinstance(env.get("valueFrom"), dict) else None
        if isinstance(field_ref, dict) and field_ref.get("apiVersion") is None:
            field_ref["apiVersion"] = "v1"
    resources = _dict(c, "resources")
    _resource_list(resources.get("limits"))
    _resource_list(resources.get("requests"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _http_get(lifecycle[hook].get("httpGet"))


def _volume(v: dict[str, Any]) -> None:
    if not any(v.get(k) is not None for k in _VOLUME_SOURCE_KEYS):
        v["emptyDir"] = {}
    for src in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(v.get(src), dict) and v[src].get("defaultMode") is None:
            v[src]["defaultMode"] = 420
    if isinstance(v.get("hostPath"), dict) and v["hostPath"].get("type") is None:
        v["hostPath"]["type"] = ""
    items = _dicts(v["downwardAPI"].get("items")) if isinstance(v.get("downwardAPI"), dict) else []
    for source in _dicts(v["projected"].get("sources")) if isinstance(v.get("projected"), dict) else []:
        if isinstance(source.get("downwardAPI"), dict):
            items += _dicts(source["downwardAPI"].get("items"))
        token = source.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
    for item in items:
        if isinstance(item.get("fieldRef"), dict) and item["fieldRef"].get("apiVersion") is None:
            item["fieldRef"]["apiVersion"] = "v1"
    ephemeral = v.get("ephemeral")
    if isinstance(ephemeral, dict) and isinstance(ephemeral.get("volumeClaimTemplate"), dict):
        _pvc_spec(_dict(ephemeral["volumeClaimTemplate"], "spec"))


def _pvc_spec(spec: dict[str, Any]) -> None:
    _setdefault(spec, "volumeMode", "Filesystem")
    resources = spec.get("resources")
    if isinstance(resources, dict):
        _resource_list(resources.get("limits"))
        _resource_list(resources.get("requests"))


def _pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec + the per-field defaulters reached from a PodSpec."""
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    _setdefault(spec, "schedulerName", "default-scheduler")
    # v1 conversion keeps the deprecated serviceAccount alias in sync with serviceAccountName.
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for c in _dicts(spec.get("initContainers")) + _dicts(spec.get("containers")) + _dicts(
            spec.get("ephemeralContainers")):
        _container(c)
    for v in _dicts(spec.get("volumes")):
        _volume(v)
    _resource_list(spec.get("overhead"))


def _pod_template(template: Any) -> None:
    if isinstance(template, dict):
        _pod_spec(_dict(template, "spec"))


def _quantity(q: Any) -> Decimal:
    try:
        return parse_quantity(q) if isinstance(q, str | int | float) else Decimal(0)
    except ValueError:
        return Decimal(0)


def pod_qos_class(pod: Mapping[str, Any]) -> str:
    """ComputePodQOS: Guaranteed, Burstable or BestEffort (cpu and memory only)."""
    spec = _mapping(pod.get("spec"))
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in _list(spec.get("containers")) + _list(spec.get("initContainers")):
        res = _mapping(_mapping(c).get("resources"))
        for name, q in _mapping(res.get("requests")).items():
            if name in ("cpu", "memory") and _quantity(q) > 0:
                requests[name] = requests.get(name, Decimal(0)) + _quantity(q)
        found = set()
        for name, q in _mapping(res.get("limits")).items():
            if name in ("cpu", "memory") and _quantity(q) > 0:
                found.add(name)
                limits[name] = limits.get(name, Decimal(0)) + _quantity(q)
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(n) == q for n, q in requests.items()) and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def _pod(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    for c in _dicts(spec.get("initContainers")) + _dicts(spec.get("containers")):
        # SetDefaults_Pod: requests default to limits (pods only, not templates).
        res = _dict(c, "resources")
        if isinstance(res.get("limits"), dict):
            requests = _dict(res, "requests")
            for name, q in res["limits"].items():
                requests.setdefault(name, q)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for c in _dicts(spec.get("initContainers")) + _dicts(spec.get("containers")):
            for port in _dicts(c.get("ports")):
                if not port.get("hostPort"):
                    port["hostPort"] = port.get("containerPort")
    tgps = spec.get("terminationGracePeriodSeconds")
    if isinstance(tgps, int) and tgps < 0:
        spec["terminationGracePeriodSeconds"] = 1  # negative values are treated as 1 since v1.27
    _pod_spec(spec)
    status = _dict(obj, "status")
    if create:
        # PrepareForCreate resets status; admission plugins run on create only.
        obj["status"] = status = {"phase": "Pending"}
        mirror = "kubernetes.io/config.mirror" in (_dict(obj, "metadata").get("annotations") or {})
        _admit_pod(spec, service_account=not mirror)
    _setdefault(status, "phase", "Pending")
    _setdefault(status, "qosClass", pod_qos_class(obj))


def _admit_pod(spec: dict[str, Any], service_account: bool = True) -> None:
    """ServiceAccount (not for mirror pods, as upstream), Priority and DefaultTolerationSeconds
    admission plugins."""
    if service_account:
        _setdefault(spec, "serviceAccountName", "default")
        spec["serviceAccount"] = spec["serviceAccountName"]
    class_name = spec.get("priorityClassName") or ""
    if spec.get("priority") is None:
        if not class_name:
            spec["priority"] = 0
        elif class_name in _BUILTIN_PRIORITY_CLASSES:
            spec["priority"] = _BUILTIN_PRIORITY_CLASSES[class_name]
    if spec.get("preemptionPolicy") is None and (not class_name or class_name in _BUILTIN_PRIORITY_CLASSES):
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    tolerations = _list(spec.get("tolerations"))
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        covered = any(isinstance(t, Mapping) and t.get("key") in (taint, "", None)
                      and t.get("effect") in ("NoExecute", "", None) for t in tolerations)
        if not covered:
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": 300})
    if tolerations:
        spec["tolerations"] = tolerations


def _service(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        if cfg.get("timeoutSeconds") is None:
            cfg["timeoutSeconds"] = 10800
    _setdefault(spec, "type", "ClusterIP")
    stype = spec["type"]
    for port in _dicts(spec.get("ports")):
        _setdefault(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    externally_accessible = stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and spec.get("externalIPs"))
    if externally_accessible:
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and stype in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if stype != "ExternalName":
        # Registry normalization: clusterIP and clusterIPs mirror each other.
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIPs") and not spec.get("clusterIP"):
            spec["clusterIP"] = spec["clusterIPs"][0]
        headless = spec.get("clusterIPs") == ["None"]
        if spec.get("ipFamilyPolicy") is None:
            selectorless = headless and not spec.get("selector")
            spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless else "SingleStack"
        if not spec.get("ipFamilies"):
            ips = [ip for ip in _list(spec.get("clusterIPs")) if ip != "None"]
            if spec["ipFamilyPolicy"] == "SingleStack":
                spec["ipFamilies"] = ["IPv6" if ips and ":" in str(ips[0]) else "IPv4"]
            elif headless and not spec.get("selector"):
                spec["ipFamilies"] = ["IPv4", "IPv6"]
            else:
                spec["ipFamilies"] = ["IPv6" if ":" in str(ip) else "IPv4" for ip in ips] or ["IPv4"]
    _dict(_dict(obj, "status"), "loadBalancer")


def _deployment(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _dict(strategy, "rollingUpdate")
        for name in ("maxUnavailable", "maxSurge"):
            if ru.get(name) is None:
                ru[name] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _pod_template(spec.get("template"))
    if create:
        obj["status"] = {}


def _replicaset(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _pod_template(spec.get("template"))
    if create:
        obj["status"] = {"replicas": 0}


def _daemonset(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _dict(strategy, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _pod_template(spec.get("template"))
    if create:
        _dict(_dict(obj, "metadata"), "annotations").setdefault("deprecated.daemonset.template.generation", "1")
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                         "numberReady": 0}


def _statefulset(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        if strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {}
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        if strategy["rollingUpdate"].get("partition") is None:
            strategy["rollingUpdate"]["partition"] = 0
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _setdefault(retention, "whenDeleted", "Retain")
    _setdefault(retention, "whenScaled", "Retain")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _pod_template(spec.get("template"))
    for pvc in _dicts(spec.get("volumeClaimTemplates")):
        pvc.setdefault("apiVersion", "v1")
        pvc.setdefault("kind", "PersistentVolumeClaim")
        _pvc_spec(_dict(pvc, "spec"))
        _setdefault(_dict(pvc, "status"), "phase", "Pending")
    if create:
        obj["status"] = {"replicas": 0, "availableReplicas": 0}


def _job_spec_template(spec: dict[str, Any]) -> None:
    _pod_template(spec.get("template"))


def _job(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = _MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    meta = _dict(obj, "metadata")
    template = spec.get("template")
    template_meta = template.get("metadata") if isinstance(template, dict) else None
    template_labels = template_meta.get("labels") if isinstance(template_meta, dict) else None
    if isinstance(template_labels, dict) and template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    _setdefault(spec, "completionMode", "NonIndexed")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    policy = spec.get("podFailurePolicy")
    if isinstance(policy, dict):
        for rule in _dicts(policy.get("rules")):
            for pattern in _dicts(rule.get("onPodConditions")):
                _setdefault(pattern, "status", "True")
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if isinstance(policy, dict) else "TerminatingOrFailed"
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    _job_spec_template(spec)
    if create:
        obj["status"] = {}


def apply_job_selector(obj: dict[str, Any], uid: str) -> None:
    """Generate a Job's selector and pod-template labels (registry generateSelector).

    Kubernetes does this on create unless ``spec.manualSelector`` is true: the
    template gets ``controller-uid``/``batch.kubernetes.io/controller-uid`` (the uid)
    and ``job-name``/``batch.kubernetes.io/job-name`` (the Job's name), the selector
    matches ``batch.kubernetes.io/controller-uid``, and a Job without labels of its
    own ends up with the template's labels.
    """
    spec = _dict(obj, "spec")
    meta = _dict(obj, "metadata")
    if spec.get("manualSelector") is True:
        return
    labels = _dict(_dict(_dict(spec, "template"), "metadata"), "labels")
    name = str(meta.get("name") or "")
    for label in ("job-name", "batch.kubernetes.io/job-name"):
        labels.setdefault(label, name)
    for label in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        labels.setdefault(label, uid)
    match_labels = _dict(_dict(spec, "selector"), "matchLabels")
    match_labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    if not meta.get("labels"):
        meta["labels"] = dict(labels)


def _cronjob(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "concurrencyPolicy", "Allow")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    _job_spec_template(_dict(_dict(spec, "jobTemplate"), "spec"))
    if create:
        obj["status"] = {}


def _namespace(obj: dict[str, Any], create: bool) -> None:
    meta = _dict(obj, "metadata")
    if meta.get("name"):
        _dict(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    status = _dict(obj, "status")
    if create:
        obj["status"] = status = {"phase": "Active"}
        finalizers = _list(_dict(obj, "spec").get("finalizers"))
        if "kubernetes" not in finalizers:
            obj["spec"]["finalizers"] = [*finalizers, "kubernetes"]
    _setdefault(status, "phase", "Active")


def _node(obj: dict[str, Any], create: bool) -> None:
    spec = _dict(obj, "spec")
    if spec.get("podCIDR") and not spec.get("podCIDRs"):
        spec["podCIDRs"] = [spec["podCIDR"]]
    elif spec.get("podCIDRs") and not spec.get("podCIDR"):
        spec["podCIDR"] = spec["podCIDRs"][0]
    status = obj.get("status")
    if isinstance(status, dict):
        _resource_list(status.get("capacity"))
        _resource_list(status.get("allocatable"))
        if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
            status["allocatable"] = dict(status["capacity"])


def _secret(obj: dict[str, Any], create: bool) -> None:
    _setdefault(obj, "type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        # v1 conversion: stringData is write-only and wins over data.
        data = _dict(obj, "data")
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _event(obj: dict[str, Any], create: bool) -> None:
    # Fields without omitempty that Kubernetes always serializes.
    _dict(obj, "involvedObject")
    _dict(obj, "source")
    for name in ("firstTimestamp", "lastTimestamp", "eventTime"):
        obj.setdefault(name, None)
    for name in ("reportingComponent", "reportingInstance"):
        obj.setdefault(name, "")


def _endpoints(obj: dict[str, Any], create: bool) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _setdefault(port, "protocol", "TCP")


def _endpointslice(obj: dict[str, Any], create: bool) -> None:
    for port in _dicts(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        _setdefault(port, "protocol", "TCP")


def _binding(obj: dict[str, Any], create: bool) -> None:
    _setdefault(_dict(obj, "roleRef"), "apiGroup", _RBAC_GROUP)
    for subject in _dicts(obj.get("subjects")):
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = _RBAC_GROUP


def apply_defaults(resource: str, obj: dict[str, Any], *, create: bool = True) -> None:
    """Fill in Kubernetes' defaults for ``resource`` (plural name) in place.

    ``create`` adds the create-only behaviour (status reset, admission plugins,
    namespace finalizer); pass ``create=False`` when defaulting an update.
    Unknown resources are left untouched.
    """
    if not isinstance(obj, dict):
        return
    if resource == "pods":
        _pod(obj, create)
    elif resource == "services":
        _service(obj)
    elif resource in _HANDLERS:
        _HANDLERS[resource](obj, create)


_HANDLERS: Final = {
    "deployments": _deployment, "replicasets": _replicaset, "daemonsets": _daemonset,
    "statefulsets": _statefulset, "jobs": _job, "cronjobs": _cronjob, "namespaces": _namespace,
    "nodes": _node, "secrets": _secret, "events": _event, "endpoints": _endpoints,
    "endpointslices": _endpointslice, "rolebindings": _binding, "clusterrolebindings": _binding,
}

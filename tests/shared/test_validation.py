"""Validation causes (field, reason, message) compared with Kubernetes' own errors."""

import copy
from collections.abc import Callable
from typing import Any

import pytest

from shared.api.defaults import apply_defaults, apply_job_selector
from shared.api.validation import Cause, validate

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
    "is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
PORT_RANGE = "must be between 1 and 65535, inclusive"


def template(labels: dict[str, str] | None = None, restart: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": labels if labels is not None else {"app": "web"}}, "spec": spec}


VALID: dict[str, dict[str, Any]] = {
    "pods": {
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "example.com/tier": "front"},
                     "annotations": {"Example.com/Note": "anything goes"}, "finalizers": ["example.com/cleanup"],
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                          "uid": "abc", "controller": True}]},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [{
                "name": "web", "image": "nginx:1.25",
                "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}],
                "env": [{"name": "MY.VAR-1", "value": "x"},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "app.key"}}}],
                "envFrom": [{"secretRef": {"name": "creds"}}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "1"},
                              "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                "livenessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 5},
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "startupProbe": {"exec": {"command": ["cat", "/ready"]}},
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.conf"}]}},
                        {"name": "data"}],
            "restartPolicy": "OnFailure",
            "dnsPolicy": "Default",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                            {"operator": "Exists"},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "terminationGracePeriodSeconds": 0,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        },
    },
    "services": {"metadata": {"name": "web", "namespace": "default"},
                 "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                                {"name": "https", "port": 443, "targetPort": 8443}]}},
    "namespaces": {"metadata": {"name": "team-a"}},
    "nodes": {"metadata": {"name": "node-1.example.com"},
              "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
              "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}},
    "endpoints": {"metadata": {"name": "web", "namespace": "default"},
                  "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1"}], "ports": [{"port": 80}]}]},
    "configmaps": {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.conf": "x=1", "KEY_2": ""},
                   "binaryData": {"blob": "AAEC"}},
    "secrets": {"metadata": {"name": "creds", "namespace": "default"}, "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}},
    "events": {"metadata": {"name": "web.17a2b3c4d5e6f7a8", "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "apiVersion": "v1"},
               "reason": "Scheduled", "message": "Successfully assigned", "type": "Normal"},
    "serviceaccounts": {"metadata": {"name": "builder", "namespace": "default"}},
    "deployments": {"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template(),
                             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "0%"}},
                             "minReadySeconds": 5, "progressDeadlineSeconds": 60}},
    "replicasets": {"metadata": {"name": "web-5d4f8", "namespace": "default"},
                    "spec": {"replicas": 0, "selector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                               "values": ["web"]}]},
                             "template": template()}},
    "daemonsets": {"metadata": {"name": "agent", "namespace": "kube-system"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(),
                            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%",
                                                                                          "maxUnavailable": 0}}}},
    "statefulsets": {"metadata": {"name": "db", "namespace": "default"},
                     "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": template(),
                              "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                                  "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}},
    "jobs": {"metadata": {"name": "pi", "namespace": "default"},
             "spec": {"backoffLimit": 4, "template": template(labels={}, restart="Never")}},
    "cronjobs": {"metadata": {"name": "hello", "namespace": "default"},
                 "spec": {"schedule": "*/5 9-17 * JAN-jun mon-fri", "jobTemplate": {"spec": {
                     "template": template(restart="OnFailure")}}}},
    "leases": {"metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
               "spec": {"holderIdentity": "node-1_abc", "leaseDurationSeconds": 15, "leaseTransitions": 0}},
    "endpointslices": {"metadata": {"name": "web-abc12", "namespace": "default"}, "addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "node-1"}],
                       "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    "roles": {"metadata": {"name": "pod-reader", "namespace": "default"},
              "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]},
    "clusterroles": {"metadata": {"name": "system:health"},
                     "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]},
    "rolebindings": {"metadata": {"name": "read-pods", "namespace": "default"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                     "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"},
                                  {"kind": "ServiceAccount", "name": "builder"}]},
    "clusterrolebindings": {"metadata": {"name": "health"},
                            "roleRef": {"kind": "ClusterRole", "name": "system:health"},
                            "subjects": [{"kind": "Group", "name": "system:authenticated"}]},
}


def triples(causes: list[Cause]) -> list[tuple[str, str]]:
    return [(c.field, c.reason) for c in causes]


@pytest.mark.parametrize("resource", sorted(VALID))
def test_valid_example_passes(resource: str) -> None:
    assert validate(resource, VALID[resource]) == []


@pytest.mark.parametrize("resource", sorted(VALID))
def test_valid_example_passes_after_defaulting(resource: str) -> None:
    obj = copy.deepcopy(VALID[resource])
    apply_defaults(resource, obj)
    if resource == "jobs":
        obj["metadata"]["uid"] = "0c8e3a4b"
        apply_job_selector(obj, "0c8e3a4b")
    assert validate(resource, obj) == []
    # An update that changes nothing is valid too.
    assert validate(resource, obj, copy.deepcopy(obj)) == []


def mutated(resource: str, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    obj = copy.deepcopy(VALID[resource])
    change(obj)
    return obj


def pod_c(o: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = o["spec"]["containers"][0]
    return container


INVALID: list[tuple[str, str, Callable[[dict[str, Any]], Any], str, str, str]] = [
    # id, resource, mutation, field, reason, message
    ("pod-no-image", "pods", lambda o: pod_c(o).pop("image"),
     "spec.containers[0].image", "FieldValueRequired", "Required value"),
    ("pod-bad-name", "pods", lambda o: o["metadata"].update(name="Bad_Name"),
     "metadata.name", "FieldValueInvalid", f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}'),
    ("pod-no-name", "pods", lambda o: o["metadata"].pop("name"),
     "metadata.name", "FieldValueRequired", "Required value: name or generateName is required"),
    ("pod-no-namespace", "pods", lambda o: o["metadata"].pop("namespace"),
     "metadata.namespace", "FieldValueRequired", "Required value"),
    ("pod-no-containers", "pods", lambda o: o["spec"].update(containers=[]),
     "spec.containers", "FieldValueRequired", "Required value"),
    ("pod-container-name", "pods", lambda o: pod_c(o).update(name="Web"),
     "spec.containers[0].name", "FieldValueInvalid", f'Invalid value: "Web": {LABEL_MSG}'),
    ("pod-container-name-required", "pods", lambda o: pod_c(o).pop("name"),
     "spec.containers[0].name", "FieldValueRequired", "Required value"),
    ("pod-init-duplicate-name", "pods", lambda o: o["spec"]["initContainers"][0].update(name="web"),
     "spec.initContainers[0].name", "FieldValueDuplicate", 'Duplicate value: "web"'),
    ("pod-duplicate-container", "pods", lambda o: o["spec"]["containers"].append(dict(pod_c(o), ports=[])),
     "spec.containers[1].name", "FieldValueDuplicate", 'Duplicate value: "web"'),
    ("pod-port-range", "pods", lambda o: pod_c(o)["ports"][0].update(containerPort=70000),
     "spec.containers[0].ports[0].containerPort", "FieldValueInvalid", f"Invalid value: 70000: {PORT_RANGE}"),
    ("pod-port-required", "pods", lambda o: pod_c(o)["ports"][0].pop("containerPort"),
     "spec.containers[0].ports[0].containerPort", "FieldValueRequired", "Required value"),
    ("pod-host-port-range", "pods", lambda o: pod_c(o)["ports"][0].update(hostPort=0x10000),
     "spec.containers[0].ports[0].hostPort", "FieldValueInvalid", f"Invalid value: 65536: {PORT_RANGE}"),
    ("pod-protocol", "pods", lambda o: pod_c(o)["ports"][0].update(protocol="HTTP"),
     "spec.containers[0].ports[0].protocol", "FieldValueNotSupported",
     'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    ("pod-port-name", "pods", lambda o: pod_c(o)["ports"][0].update(name="http_port"),
     "spec.containers[0].ports[0].name", "FieldValueInvalid",
     'Invalid value: "http_port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
    ("pod-host-port-conflict", "pods", lambda o: o["spec"]["containers"].append(
        {"name": "b", "image": "b", "ports": [{"containerPort": 81, "hostPort": 8080}]}) or pod_c(o)["ports"][0].update(
        hostPort=8080),
     "spec.containers[1].ports[0].hostPort", "FieldValueDuplicate", 'Duplicate value: "TCP//8080"'),
    ("pod-restart-policy", "pods", lambda o: o["spec"].update(restartPolicy="Sometimes"),
     "spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("pod-dns-policy", "pods", lambda o: o["spec"].update(dnsPolicy="Google"),
     "spec.dnsPolicy", "FieldValueNotSupported",
     'Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"'),
    ("pod-pull-policy", "pods", lambda o: pod_c(o).update(imagePullPolicy="Sometimes"),
     "spec.containers[0].imagePullPolicy", "FieldValueNotSupported",
     'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'),
    ("pod-volume-duplicate", "pods", lambda o: o["spec"]["volumes"].append({"name": "cfg", "emptyDir": {}}),
     "spec.volumes[2].name", "FieldValueDuplicate", 'Duplicate value: "cfg"'),
    ("pod-volume-two-sources", "pods",
     lambda o: o["spec"]["volumes"].append({"name": "x", "emptyDir": {}, "configMap": {"name": "x"}}),
     "spec.volumes[2].configMap", "FieldValueForbidden", "Forbidden: may not specify more than 1 volume type"),
    ("pod-volume-name", "pods", lambda o: o["spec"]["volumes"].append({"name": "Scratch"}),
     "spec.volumes[2].name", "FieldValueInvalid", f'Invalid value: "Scratch": {LABEL_MSG}'),
    ("pod-mount-not-found", "pods", lambda o: pod_c(o)["volumeMounts"][0].update(name="missing"),
     "spec.containers[0].volumeMounts[0].name", "FieldValueNotFound", 'Not found: "missing"'),
    ("pod-mount-path-unique", "pods", lambda o: pod_c(o)["volumeMounts"][1].update(mountPath="/etc/cfg"),
     "spec.containers[0].volumeMounts[1].mountPath", "FieldValueInvalid", 'Invalid value: "/etc/cfg": must be unique'),
    ("pod-configmap-name-required", "pods", lambda o: o["spec"]["volumes"].append({"name": "x", "configMap": {}}),
     "spec.volumes[2].configMap.name", "FieldValueRequired", "Required value"),
    ("pod-default-mode", "pods",
     lambda o: o["spec"]["volumes"].append({"name": "x", "secret": {"secretName": "s", "defaultMode": 0o1000}}),
     "spec.volumes[2].secret.defaultMode", "FieldValueInvalid",
     "Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive"),
    ("pod-env-name", "pods", lambda o: pod_c(o)["env"][0].update(name="A=B"),
     "spec.containers[0].env[0].name", "FieldValueInvalid",
     'Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters '
     "other than '='"),
    ("pod-env-name-required", "pods", lambda o: pod_c(o)["env"][0].pop("name"),
     "spec.containers[0].env[0].name", "FieldValueRequired", "Required value"),
    ("pod-env-field-path", "pods", lambda o: pod_c(o)["env"][1]["valueFrom"]["fieldRef"].update(fieldPath="spec.foo"),
     "spec.containers[0].env[1].valueFrom.fieldRef.fieldPath", "FieldValueNotSupported",
     'Unsupported value: "spec.foo": supported values: "metadata.name", "metadata.namespace", "metadata.uid", '
     '"spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", '
     '"status.podIPs"'),
    ("pod-env-value-and-from", "pods", lambda o: pod_c(o)["env"][1].update(value="x"),
     "spec.containers[0].env[1].valueFrom", "FieldValueInvalid",
     'Invalid value: "": may not be specified when `value` is not empty'),
    ("pod-requests-over-limits", "pods", lambda o: pod_c(o)["resources"]["requests"].update(cpu="2"),
     "spec.containers[0].resources.requests", "FieldValueInvalid",
     'Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ("pod-bad-quantity", "pods", lambda o: pod_c(o)["resources"]["limits"].update(memory="1x"),
     "spec.containers[0].resources.limits[memory]", "FieldValueInvalid",
     "Invalid value: \"1x\": quantities must match the regular expression "
     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("pod-negative-quantity", "pods", lambda o: pod_c(o)["resources"]["requests"].update(memory="-1Mi"),
     "spec.containers[0].resources.requests[memory]", "FieldValueInvalid",
     'Invalid value: "-1Mi": must be greater than or equal to 0'),
    ("pod-extended-resource-mismatch", "pods", lambda o: pod_c(o)["resources"]["requests"].update(
        {"nvidia.com/gpu": "2", "cpu": "1"}) or pod_c(o)["resources"]["limits"].update({"nvidia.com/gpu": "3"}),
     "spec.containers[0].resources.requests", "FieldValueInvalid",
     'Invalid value: "2": must be equal to nvidia.com/gpu limit of 3'),
    ("pod-resource-name", "pods", lambda o: pod_c(o)["resources"]["limits"].update(pods="1"),
     "spec.containers[0].resources.limits[pods]", "FieldValueInvalid",
     'Invalid value: "pods": must be a standard resource for containers'),
    ("pod-probe-two-handlers", "pods", lambda o: pod_c(o)["livenessProbe"].update(tcpSocket={"port": 80}),
     "spec.containers[0].livenessProbe.tcpSocket", "FieldValueForbidden",
     "Forbidden: may not specify more than 1 handler type"),
    ("pod-probe-no-handler", "pods", lambda o: pod_c(o).update(readinessProbe={"periodSeconds": 3}),
     "spec.containers[0].readinessProbe", "FieldValueRequired", "Required value: must specify a handler type"),
    ("pod-probe-negative-period", "pods", lambda o: pod_c(o)["livenessProbe"].update(periodSeconds=-1),
     "spec.containers[0].livenessProbe.periodSeconds", "FieldValueInvalid",
     "Invalid value: -1: must be greater than or equal to 0"),
    ("pod-liveness-success-threshold", "pods", lambda o: pod_c(o)["livenessProbe"].update(successThreshold=2),
     "spec.containers[0].livenessProbe.successThreshold", "FieldValueInvalid", "Invalid value: 2: must be 1"),
    ("pod-probe-port", "pods", lambda o: pod_c(o)["readinessProbe"]["tcpSocket"].update(port=0),
     "spec.containers[0].readinessProbe.tcpSocket.port", "FieldValueInvalid", f"Invalid value: 0: {PORT_RANGE}"),
    ("pod-exec-command", "pods", lambda o: pod_c(o)["startupProbe"]["exec"].update(command=[]),
     "spec.containers[0].startupProbe.exec.command", "FieldValueRequired", "Required value"),
    ("pod-init-probe", "pods", lambda o: o["spec"]["initContainers"][0].update(livenessProbe={"exec": {"command": ["x"]}}),
     "spec.initContainers[0].livenessProbe", "FieldValueForbidden",
     "Forbidden: may not be set for init containers without restartPolicy=Always"),
    ("pod-toleration-operator", "pods", lambda o: o["spec"]["tolerations"][1].update(operator="Equal"),
     "spec.tolerations[1].operator", "FieldValueInvalid",
     'Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all '
     'keys"'),
    ("pod-node-selector-value", "pods", lambda o: o["spec"]["nodeSelector"].update(disk="ssd!"),
     "spec.nodeSelector", "FieldValueInvalid",
     'Invalid value: "ssd!": a valid label must be an empty string or consist of alphanumeric characters, \'-\', '
     "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
     "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ("pod-active-deadline", "pods", lambda o: o["spec"].update(activeDeadlineSeconds=0),
     "spec.activeDeadlineSeconds", "FieldValueInvalid", "Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ("pod-label-key", "pods", lambda o: o["metadata"]["labels"].update({"bad key": "x"}),
     "metadata.labels", "FieldValueInvalid", f'Invalid value: "bad key": {QNAME_MSG}'),
    ("pod-label-value-length", "pods", lambda o: o["metadata"]["labels"].update(app="x" * 64),
     "metadata.labels", "FieldValueInvalid", f'Invalid value: "{"x" * 64}": must be no more than 63 characters'),
    ("pod-annotations-size", "pods", lambda o: o["metadata"]["annotations"].update(big="x" * 262144),
     "metadata.annotations", "FieldValueTooLong", "Too long: must have at most 262144 bytes"),
    ("pod-owner-uid", "pods", lambda o: o["metadata"]["ownerReferences"][0].pop("uid"),
     "metadata.ownerReferences.uid", "FieldValueInvalid", 'Invalid value: "": must not be empty'),
    ("pod-finalizer", "pods", lambda o: o["metadata"].update(finalizers=["cleanup"]),
     "metadata.finalizers[0]", "FieldValueInvalid",
     'Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified'),
    ("svc-port-range", "services", lambda o: o["spec"]["ports"][0].update(port=70000),
     "spec.ports[0].port", "FieldValueInvalid", f"Invalid value: 70000: {PORT_RANGE}"),
    ("svc-no-ports", "services", lambda o: o["spec"].update(ports=[]),
     "spec.ports", "FieldValueRequired", "Required value"),
    ("svc-port-name-required", "services", lambda o: o["spec"]["ports"][1].pop("name"),
     "spec.ports[1].name", "FieldValueRequired", "Required value"),
    ("svc-port-name-duplicate", "services", lambda o: o["spec"]["ports"][1].update(name="http"),
     "spec.ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"'),
    ("svc-target-port", "services", lambda o: o["spec"]["ports"][0].update(targetPort=70000),
     "spec.ports[0].targetPort", "FieldValueInvalid", f"Invalid value: 70000: {PORT_RANGE}"),
    ("svc-target-port-name", "services", lambda o: o["spec"]["ports"][0].update(targetPort="web--port"),
     "spec.ports[0].targetPort", "FieldValueInvalid", 'Invalid value: "web--port": must not contain consecutive hyphens'),
    ("svc-type", "services", lambda o: o["spec"].update(type="Ingress"),
     "spec.type", "FieldValueNotSupported",
     'Unsupported value: "Ingress": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ("svc-node-port-clusterip", "services", lambda o: o["spec"]["ports"][0].update(nodePort=30080),
     "spec.ports[0].nodePort", "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("svc-node-port-range", "services", lambda o: o["spec"].update(type="NodePort") or o["spec"]["ports"][0].update(
        nodePort=80),
     "spec.ports[0].nodePort", "FieldValueInvalid",
     "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"),
    ("svc-cluster-ip", "services", lambda o: o["spec"].update(clusterIP="10.0.0.300"),
     "spec.clusterIPs[0]", "FieldValueInvalid",
     'Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'),
    ("svc-session-affinity", "services", lambda o: o["spec"].update(sessionAffinity="Sticky"),
     "spec.sessionAffinity", "FieldValueNotSupported",
     'Unsupported value: "Sticky": supported values: "ClientIP", "None"'),
    ("svc-name", "services", lambda o: o["metadata"].update(name="1web"),
     "metadata.name", "FieldValueInvalid", f'Invalid value: "1web": {DNS1035_MSG}'),
    ("svc-selector", "services", lambda o: o["spec"]["selector"].update(app="a b"),
     "spec.selector", "FieldValueInvalid",
     'Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, \'-\', '
     "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
     "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ("deploy-selector-mismatch", "deployments", lambda o: o["spec"]["template"]["metadata"].update(labels={"app": "api"}),
     "spec.template.metadata.labels", "FieldValueInvalid",
     'Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`'),
    ("deploy-empty-selector", "deployments", lambda o: o["spec"].update(selector={}),
     "spec.selector", "FieldValueInvalid",
     "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
     "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"),
    ("deploy-replicas", "deployments", lambda o: o["spec"].update(replicas=-1),
     "spec.replicas", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("deploy-strategy", "deployments", lambda o: o["spec"].update(strategy={"type": "BlueGreen"}),
     "spec.strategy", "FieldValueNotSupported",
     'Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", RollingUpdate:(*apps.RollingUpdateDeployment)'
     '(nil)}: supported values: "Recreate", "RollingUpdate"'),
    ("deploy-both-zero", "deployments", lambda o: o["spec"]["strategy"]["rollingUpdate"].update(maxSurge="0%"),
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid",
     "Invalid value: 0%: may not be 0 when `maxSurge` is 0"),
    ("deploy-percent", "deployments", lambda o: o["spec"]["strategy"]["rollingUpdate"].update(maxSurge="50"),
     "spec.strategy.rollingUpdate.maxSurge", "FieldValueInvalid",
     "Invalid value: 50: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  "
     "or '93%', regex used for validation is '[0-9]+%')"),
    ("deploy-unavailable-over-100", "deployments",
     lambda o: o["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable="150%"),
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid",
     "Invalid value: 150%: must not be greater than 100%"),
    ("deploy-recreate-rolling", "deployments", lambda o: o["spec"]["strategy"].update(type="Recreate"),
     "spec.strategy.rollingUpdate", "FieldValueForbidden",
     "Forbidden: may not be specified when strategy `type` is 'Recreate'"),
    ("deploy-progress-deadline", "deployments", lambda o: o["spec"].update(progressDeadlineSeconds=5),
     "spec.progressDeadlineSeconds", "FieldValueInvalid", "Invalid value: 5: must be greater than minReadySeconds"),
    ("deploy-min-ready", "deployments", lambda o: o["spec"].update(minReadySeconds=-1),
     "spec.minReadySeconds", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("deploy-history-limit", "deployments", lambda o: o["spec"].update(revisionHistoryLimit=-2),
     "spec.revisionHistoryLimit", "FieldValueInvalid", "Invalid value: -2: must be greater than or equal to 0"),
    ("deploy-restart-policy", "deployments", lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Never"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Never": supported values: "Always"'),
    ("deploy-template-image", "deployments", lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("image"),
     "spec.template.spec.containers[0].image", "FieldValueRequired", "Required value"),
    ("deploy-template-label", "deployments", lambda o: o["spec"]["template"]["metadata"]["labels"].update({"/x": "y"}),
     "spec.template.labels", "FieldValueInvalid", 'Invalid value: "/x": prefix part must be non-empty'),
    ("rs-empty-selector", "replicasets", lambda o: o["spec"].update(selector={"matchLabels": {}}),
     "spec.selector", "FieldValueInvalid",
     "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, "
     "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"),
    ("ds-no-selector", "daemonsets", lambda o: o["spec"].pop("selector"),
     "spec.template.metadata.labels", "FieldValueInvalid",
     'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`'),
    ("ds-surge-and-unavailable", "daemonsets",
     lambda o: o["spec"]["updateStrategy"]["rollingUpdate"].update(maxUnavailable=1),
     "spec.updateStrategy.rollingUpdate.maxSurge", "FieldValueInvalid",
     "Invalid value: 10%: may not be set when maxUnavailable is non-zero"),
    ("ds-restart-policy", "daemonsets", lambda o: o["spec"]["template"]["spec"].update(restartPolicy="OnFailure"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "OnFailure": supported values: "Always"'),
    ("sts-name", "statefulsets", lambda o: o["metadata"].update(name="db.v1"),
     "metadata.name", "FieldValueInvalid", 'Invalid value: "db.v1": must not contain dots'),
    ("sts-selector-mismatch", "statefulsets", lambda o: o["spec"]["selector"].update(matchLabels={"app": "db"}),
     "spec.template.metadata.labels", "FieldValueInvalid",
     'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`'),
    ("sts-pod-management", "statefulsets", lambda o: o["spec"].update(podManagementPolicy="Random"),
     "spec.podManagementPolicy", "FieldValueInvalid", "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"),
    ("job-restart-always", "jobs", lambda o: o["spec"]["template"]["spec"].pop("restartPolicy"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("job-completions", "jobs", lambda o: o["spec"].update(completions=-1),
     "spec.completions", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("job-parallelism", "jobs", lambda o: o["spec"].update(parallelism=-1),
     "spec.parallelism", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("job-backoff", "jobs", lambda o: o["spec"].update(backoffLimit=-1),
     "spec.backoffLimit", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("cron-schedule", "cronjobs", lambda o: o["spec"].update(schedule="every minute"),
     "spec.schedule", "FieldValueInvalid",
     'Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]'),
    ("cron-schedule-range", "cronjobs", lambda o: o["spec"].update(schedule="61 * * * *"),
     "spec.schedule", "FieldValueInvalid", 'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
    ("cron-no-schedule", "cronjobs", lambda o: o["spec"].pop("schedule"),
     "spec.schedule", "FieldValueRequired", "Required value"),
    ("cron-name-length", "cronjobs", lambda o: o["metadata"].update(name="c" * 53),
     "metadata.name", "FieldValueInvalid", f'Invalid value: "{"c" * 53}": must be no more than 52 characters'),
    ("cron-concurrency", "cronjobs", lambda o: o["spec"].update(concurrencyPolicy="Never"),
     "spec.concurrencyPolicy", "FieldValueNotSupported",
     'Unsupported value: "Never": supported values: "Allow", "Forbid", "Replace"'),
    ("cron-job-restart", "cronjobs",
     lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"].update(restartPolicy="Always"),
     "spec.jobTemplate.spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("ns-name", "namespaces", lambda o: o["metadata"].update(name="Team_A"),
     "metadata.name", "FieldValueInvalid", f'Invalid value: "Team_A": {LABEL_MSG}'),
    ("ns-finalizer", "namespaces", lambda o: o.update(spec={"finalizers": ["custom"]}),
     "spec.finalizers", "FieldValueInvalid",
     'Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified'),
    ("node-taint-effect", "nodes", lambda o: o["spec"]["taints"][0].update(effect="Never"),
     "metadata.taints[0].effect", "FieldValueNotSupported",
     'Unsupported value: "Never": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'),
    ("node-taint-key", "nodes", lambda o: o["spec"]["taints"][0].update(key="bad key"),
     "metadata.taints[0].key", "FieldValueInvalid", f'Invalid value: "bad key": {QNAME_MSG}'),
    ("node-taint-duplicate", "nodes", lambda o: o["spec"]["taints"].append({"key": "dedicated", "effect": "NoSchedule"}),
     "metadata.taints[1]", "FieldValueDuplicate",
     'Duplicate value: core.Taint{Key:"dedicated", Value:"", Effect:"NoSchedule", TimeAdded:(*v1.Time)(nil)}: '
     "taints must be unique by key and effect pair"),
    ("node-pod-cidr", "nodes", lambda o: o["spec"].update(podCIDR="10.244.1.0"),
     "spec.podCIDRs[0]", "FieldValueInvalid",
     'Invalid value: "10.244.1.0": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'),
    ("cm-key", "configmaps", lambda o: o["data"].update({"bad key": "x"}),
     "data[bad key]", "FieldValueInvalid",
     "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
     "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
    ("cm-duplicate-binary", "configmaps", lambda o: o["data"].update(blob="x"),
     "data[blob]", "FieldValueInvalid", 'Invalid value: "blob": duplicate of key present in binaryData'),
    ("cm-too-big", "configmaps", lambda o: o["data"].update(big="x" * (1024 * 1024)),
     "", "FieldValueTooLong", "Too long: must have at most 1048576 bytes"),
    ("secret-base64", "secrets", lambda o: o["data"].update({"tls.key": "not base64!"}),
     "data[tls.key]", "FieldValueInvalid",
     'Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3'),
    ("secret-tls-key", "secrets", lambda o: o["data"].pop("tls.key"),
     "data[tls.key]", "FieldValueRequired", "Required value"),
    ("secret-key", "secrets", lambda o: o["data"].update({"..cert": "eA=="}),
     "data[..cert]", "FieldValueInvalid", "Invalid value: \"..cert\": must not start with '..'"),
    ("event-namespace", "events", lambda o: o["involvedObject"].update(namespace="other"),
     "involvedObject.namespace", "FieldValueInvalid", 'Invalid value: "other": does not match event.namespace'),
    ("sa-name", "serviceaccounts", lambda o: o["metadata"].update(name="Builder"),
     "metadata.name", "FieldValueInvalid", f'Invalid value: "Builder": {SUBDOMAIN_MSG}'),
    ("endpoints-no-addresses", "endpoints", lambda o: o["subsets"][0].pop("addresses"),
     "subsets[0]", "FieldValueRequired", "Required value: must specify `addresses` or `notReadyAddresses`"),
    ("endpoints-port", "endpoints", lambda o: o["subsets"][0]["ports"][0].update(port=0),
     "subsets[0].ports[0].port", "FieldValueInvalid", f"Invalid value: 0: {PORT_RANGE}"),
    ("lease-duration", "leases", lambda o: o["spec"].update(leaseDurationSeconds=0),
     "spec.leaseDurationSeconds", "FieldValueInvalid", "Invalid value: 0: must be greater than 0"),
    ("lease-transitions", "leases", lambda o: o["spec"].update(leaseTransitions=-1),
     "spec.leaseTransitions", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("eps-address-type", "endpointslices", lambda o: o.update(addressType="IPv5"),
     "addressType", "FieldValueNotSupported", 'Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"'),
    ("eps-no-address-type", "endpointslices", lambda o: o.pop("addressType"),
     "addressType", "FieldValueRequired", "Required value"),
    ("eps-address", "endpointslices", lambda o: o["endpoints"][0].update(addresses=["fd00::1"]),
     "endpoints[0].addresses[0]", "FieldValueInvalid", 'Invalid value: "fd00::1": must be a valid IPv4 address'),
    ("role-verbs", "roles", lambda o: o["rules"][0].pop("verbs"),
     "rules[0].verbs", "FieldValueRequired", "Required value: verbs must contain at least one value"),
    ("role-resources", "roles", lambda o: o["rules"][0].pop("resources"),
     "rules[0].resources", "FieldValueRequired", "Required value: resource rules must supply at least one resource"),
    ("role-name", "roles", lambda o: o["metadata"].update(name="a/b"),
     "metadata.name", "FieldValueInvalid", "Invalid value: \"a/b\": may not contain '/'"),
    ("role-non-resource-url", "roles", lambda o: o["rules"].append({"nonResourceURLs": ["/x"], "verbs": ["get"]}),
     "rules[1].nonResourceURLs", "FieldValueInvalid",
     'Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs'),
    ("crb-role-kind", "clusterrolebindings", lambda o: o["roleRef"].update(kind="Role"),
     "roleRef.kind", "FieldValueNotSupported", 'Unsupported value: "Role": supported values: "ClusterRole"'),
    ("rb-subject-kind", "rolebindings", lambda o: o["subjects"][0].update(kind="Robot"),
     "subjects[0].kind", "FieldValueNotSupported",
     'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
    ("crb-sa-namespace", "clusterrolebindings", lambda o: o["subjects"].append({"kind": "ServiceAccount", "name": "x"}),
     "subjects[1].namespace", "FieldValueRequired", "Required value"),
]


@pytest.mark.parametrize(("resource", "change", "field", "reason", "message"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_case(resource: str, change: Callable[[dict[str, Any]], Any], field: str, reason: str,
                      message: str) -> None:
    causes = validate(resource, mutated(resource, change))
    assert triples(causes) == [(field, reason)], causes
    assert causes[0].message == message


# --- updates ------------------------------------------------------------------------------------------------------


def stored(resource: str) -> dict[str, Any]:
    obj = copy.deepcopy(VALID[resource])
    obj["metadata"].update(uid="8f0c1a2e", resourceVersion="1")
    apply_defaults(resource, obj)
    if resource == "jobs":
        apply_job_selector(obj, "8f0c1a2e")
    return obj


UPDATES: list[tuple[str, str, Callable[[dict[str, Any]], Any], list[tuple[str, str]], str]] = [
    # id, resource, change, expected (field, reason) list, message prefix of the first cause
    ("pod-image-ok", "pods", lambda o: pod_c(o).update(image="nginx:1.26"), [], ""),
    ("pod-add-toleration-ok", "pods", lambda o: o["spec"]["tolerations"].append({"key": "k", "operator": "Exists"}),
     [], ""),
    ("pod-toleration-seconds-ok", "pods", lambda o: o["spec"]["tolerations"][2].update(tolerationSeconds=60), [], ""),
    ("pod-active-deadline-ok", "pods", lambda o: o["spec"].update(activeDeadlineSeconds=30), [], ""),
    ("pod-spec-immutable", "pods", lambda o: pod_c(o).update(command=["nginx", "-g", "daemon off;"]),
     [("spec", "FieldValueForbidden")],
     "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
     "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
     "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
    ("pod-remove-container", "pods", lambda o: o["spec"]["containers"].append({"name": "b", "image": "b"}),
     [("spec.containers", "FieldValueForbidden")], "Forbidden: pod updates may not add or remove containers"),
    ("pod-remove-toleration", "pods", lambda o: o["spec"]["tolerations"].pop(0),
     [("spec.tolerations", "FieldValueForbidden")],
     "Forbidden: existing toleration can not be modified except its tolerationSeconds"),
    ("pod-name", "pods", lambda o: o["metadata"].update(name="other"),
     [("metadata.name", "FieldValueInvalid")], 'Invalid value: "other": field is immutable'),
    ("pod-uid", "pods", lambda o: o["metadata"].update(uid="other"),
     [("metadata.uid", "FieldValueInvalid")], 'Invalid value: "other": field is immutable'),
    ("deploy-selector-immutable", "deployments",
     lambda o: o["spec"].update(selector={"matchLabels": {"app": "web", "v": "2"}})
     or o["spec"]["template"]["metadata"]["labels"].update(v="2"),
     [("spec.selector", "FieldValueInvalid")],
     'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, '
     "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
    ("deploy-scale-ok", "deployments", lambda o: o["spec"].update(replicas=10), [], ""),
    ("rs-selector-immutable", "replicasets", lambda o: o["spec"]["selector"]["matchExpressions"][0].update(
        values=["web", "api"]), [("spec.selector", "FieldValueInvalid")], "Invalid value: v1.LabelSelector{"),
    ("ds-selector-immutable", "daemonsets",
     lambda o: o["spec"].update(selector={"matchLabels": {"app": "web", "x": "y"}})
     or o["spec"]["template"]["metadata"]["labels"].update(x="y"),
     [("spec.selector", "FieldValueInvalid")], "Invalid value: v1.LabelSelector{"),
    ("sts-forbidden", "statefulsets", lambda o: o["spec"].update(serviceName="other"),
     [("spec", "FieldValueForbidden")],
     "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
     "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
    ("sts-template-ok", "statefulsets", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="db:2"),
     [], ""),
    ("job-template-immutable", "jobs", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="x:2"),
     [("spec.template", "FieldValueInvalid")], "Invalid value: core.PodTemplateSpec"),
    ("job-selector-immutable", "jobs",
     lambda o: o["spec"]["selector"]["matchLabels"].update({"batch.kubernetes.io/job-name": "pi"}),
     [("spec.selector", "FieldValueInvalid")], "Invalid value: v1.LabelSelector{"),
    ("job-suspend-ok", "jobs", lambda o: o["spec"].update(suspend=True), [], ""),
    ("svc-cluster-ip-immutable", "services", lambda o: o["spec"].update(clusterIP="10.96.0.2", clusterIPs=["10.96.0.2"]),
     [("spec.clusterIPs[0]", "FieldValueInvalid")], 'Invalid value: []string{"10.96.0.2"}: may not change once set'),
    ("node-pod-cidr-immutable", "nodes", lambda o: o["spec"].update(podCIDR="10.244.9.0/24",
                                                                    podCIDRs=["10.244.9.0/24"]),
     [("spec.podCIDRs", "FieldValueForbidden")],
     'Forbidden: node updates may not change podCIDR except from "" to valid'),
    ("node-taints-ok", "nodes", lambda o: o["spec"].update(taints=[]), [], ""),
    ("rb-role-ref", "rolebindings", lambda o: o["roleRef"].update(name="edit"),
     [("roleRef", "FieldValueInvalid")],
     'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: '
     "cannot change roleRef"),
    ("secret-type", "secrets", lambda o: o.update(type="Opaque"),
     [("type", "FieldValueInvalid")], 'Invalid value: "Opaque": field is immutable'),
]


@pytest.mark.parametrize(("resource", "change", "expected", "message"),
                         [case[1:] for case in UPDATES], ids=[case[0] for case in UPDATES])
def test_update(resource: str, change: Callable[[dict[str, Any]], Any], expected: list[tuple[str, str]],
                message: str) -> None:
    old = stored(resource)
    if resource == "services":
        old["spec"].update(clusterIP="10.96.0.1", clusterIPs=["10.96.0.1"])
    new = copy.deepcopy(old)
    change(new)
    causes = validate(resource, new, old)
    assert triples(causes) == expected, causes
    if expected:
        assert causes[0].message.startswith(message)


@pytest.mark.parametrize("resource", ["configmaps", "secrets"])
def test_immutable_data(resource: str) -> None:
    old = stored(resource)
    old["immutable"] = True
    new = copy.deepcopy(old)
    key = next(iter(new["data"]))
    new["data"][key] = "Y2hhbmdlZA=="
    causes = validate(resource, new, old)
    assert triples(causes) == [("data", "FieldValueForbidden")]
    assert causes[0].message == "Forbidden: field is immutable when `immutable` is set"
    new = copy.deepcopy(old)
    new["immutable"] = False
    assert triples(validate(resource, new, old)) == [("immutable", "FieldValueForbidden")]


def test_namespace_update_keeps_name() -> None:
    old = stored("namespaces")
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "a"
    assert validate("namespaces", new, old) == []


def test_no_new_finalizers_while_deleting() -> None:
    old = stored("configmaps")
    old["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/x"]
    causes = validate("configmaps", new, old)
    assert triples(causes) == [("metadata.finalizers", "FieldValueForbidden")]
    assert causes[0].message == ('Forbidden: no new finalizers can be added if the object is being deleted, found new '
                                 'finalizers []string{"example.com/x"}')


def test_job_generated_selector_is_checked() -> None:
    job = stored("jobs")
    job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] = "other"
    causes = validate("jobs", job)
    assert ("spec.template.metadata.labels[batch.kubernetes.io/job-name]", "FieldValueInvalid") in triples(causes)


def test_headless_and_external_name_services_need_no_ports() -> None:
    headless = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None"}}
    external = {"metadata": {"name": "db", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "db.example.com."}}
    assert validate("services", headless) == []
    assert validate("services", external) == []
    external["spec"]["externalName"] = "Not_A_Host"
    assert triples(validate("services", external)) == [("spec.externalName", "FieldValueInvalid")]


def test_multiple_errors_are_all_reported() -> None:
    pod = {"metadata": {"name": "x", "namespace": "default"},
           "spec": {"containers": [{"name": "a"}, {"name": "b", "image": "b", "ports": [{"containerPort": 0}]}]}}
    assert triples(validate("pods", pod)) == [
        ("spec.containers[0].image", "FieldValueRequired"),
        ("spec.containers[1].ports[0].containerPort", "FieldValueRequired"),
    ]


def test_kubernetes_accepts_what_we_accept() -> None:
    # Things Kubernetes accepts that a stricter validator might reject.
    pod = copy.deepcopy(VALID["pods"])
    pod["spec"]["terminationGracePeriodSeconds"] = -1            # treated as 1, not rejected
    pod["spec"]["containers"][0]["ports"].append({"containerPort": 80})  # duplicate port: only a warning
    pod["spec"]["containers"][0]["env"].append({"name": "1_STARTS_WITH_DIGIT", "value": "x"})
    pod["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = 0  # defaulted to 10
    pod["spec"]["unknownFutureField"] = {"anything": True}
    assert validate("pods", pod) == []
    event = copy.deepcopy(VALID["events"])
    del event["involvedObject"]
    assert validate("events", event) == []
    sts = copy.deepcopy(VALID["statefulsets"])
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    assert validate("statefulsets", sts) == []


def test_wrong_types_do_not_crash() -> None:
    weird: dict[str, Any] = {"metadata": {"name": 5, "labels": ["a"]}, "spec": {"containers": "nope", "volumes": [1]}}
    for resource in VALID:
        assert isinstance(validate(resource, weird), list)
    assert validate("pods", [])[0].reason == "FieldValueTypeInvalid"  # type: ignore[arg-type]


MULTI: list[tuple[str, str, Callable[[dict[str, Any]], Any], list[tuple[str, str, str]]]] = [
    # Cases where Kubernetes itself reports more than one cause.
    ("invalid-volume-hides-mount", "pods", lambda o: o["spec"]["volumes"][1].update(name="Data"), [
        ("spec.volumes[1].name", "FieldValueInvalid", f'Invalid value: "Data": {LABEL_MSG}'),
        ("spec.containers[0].volumeMounts[1].name", "FieldValueNotFound", 'Not found: "data"'),
    ]),
    ("non-standard-resource", "pods", lambda o: pod_c(o)["resources"]["limits"].update(gpu="1"), [
        ("spec.containers[0].resources.limits[gpu]", "FieldValueInvalid",
         'Invalid value: "gpu": must be a standard resource type or fully qualified'),
        ("spec.containers[0].resources.limits[gpu]", "FieldValueInvalid",
         'Invalid value: "gpu": must be a standard resource for containers'),
    ]),
    ("bad-selector-operator", "replicasets",
     lambda o: o["spec"]["selector"]["matchExpressions"][0].update(operator="Contains"), [
        ("spec.selector.matchExpressions[0].operator", "FieldValueInvalid",
         'Invalid value: "Contains": not a valid selector operator'),
        ("spec.selector", "FieldValueInvalid",
         "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1."
         'LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"Contains", Values:[]string{'
         '"web"}}}}: invalid label selector'),
    ]),
    ("deploy-no-selector", "deployments", lambda o: o["spec"].pop("selector"), [
        ("spec.selector", "FieldValueRequired", "Required value"),
        ("spec.template.metadata.labels", "FieldValueInvalid",
         'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`'),
    ]),
    ("job-manual-selector", "jobs", lambda o: o["spec"].update(manualSelector=True), [
        ("spec.selector", "FieldValueRequired", "Required value"),
        ("spec.template.metadata.labels", "FieldValueInvalid",
         "Invalid value: map[string]string{}: `selector` does not match template `labels`"),
    ]),
    ("two-unnamed-service-ports", "services", lambda o: [p.pop("name") for p in o["spec"]["ports"]], [
        ("spec.ports[0].name", "FieldValueRequired", "Required value"),
        ("spec.ports[1].name", "FieldValueRequired", "Required value"),
    ]),
]


@pytest.mark.parametrize(("resource", "change", "expected"), [case[1:] for case in MULTI],
                         ids=[case[0] for case in MULTI])
def test_multiple_causes(resource: str, change: Callable[[dict[str, Any]], Any],
                         expected: list[tuple[str, str, str]]) -> None:
    causes = validate(resource, mutated(resource, change))
    assert [(c.field, c.reason, c.message) for c in causes] == expected

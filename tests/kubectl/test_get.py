"""`kubectl get` and friends with the real kubectl against kubenats.

Checks the server-side Tables kind by kind (columns, wide columns and cell values as
kube-apiserver prints them), the output formats, selectors, sorting, all-namespaces listings,
discovery (`api-resources`, `api-versions`), `version`, `cluster-info` and `explain`, which
reads the OpenAPI v3 documents. Status is set through the status subresource, since no
controllers or kubelets run in this suite.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import yaml

from services.apiserver.discovery import VERSION
from services.apiserver.tables import negotiate
from services.apiserver.tables_workloads import human_duration
from tests.kubectl.conftest import Kubectl, ok, parse_table

AGE = re.compile(r"^\d+(s|m|m\d+s|h|h\d+m|d|d\d+h|y|y\d+d)$")
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply(kubectl: Kubectl, ns: str, *docs: dict[str, Any]) -> None:
    ok(kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs)))


def set_status(http: httpx.Client, path: str, status: dict[str, Any]) -> None:
    r = http.patch(path + "/status", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def get_table(kubectl: Kubectl, *args: str) -> list[dict[str, str]]:
    return parse_table(ok(kubectl("get", *args)))


def by_name(rows: list[dict[str, str]], key: str = "NAME") -> dict[str, dict[str, str]]:
    return {r[key]: r for r in rows}


def container(name: str = "c", image: str = "busybox:1.36") -> dict[str, Any]:
    return {"name": name, "image": image}


def template(labels: dict[str, str], *containers: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "spec": {"containers": list(containers) or [container()]}}


# ------------------------------------------------------------------------------------ pods
def test_pod_columns_and_status(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    def pod(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"containers": [container()], **spec}}

    apply(kubectl, kns,
          pod("running", nodeName="node-a", readinessGates=[{"conditionType": "example.com/ready"}]),
          pod("crash"), pod("init", initContainers=[container("setup")]), pod("done"), pod("pending"),
          pod("gone", nodeName="node-a"))
    base = f"/api/v1/namespaces/{kns}/pods/"
    running = {"state": {"running": {"startedAt": ago(minutes=30)}}, "ready": True, "restartCount": 3, "name": "c",
               "image": "busybox:1.36", "imageID": "", "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=20)}}}
    set_status(http, base + "running", {"phase": "Running", "podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}],
                                        "conditions": [{"type": "Ready", "status": "True"},
                                                       {"type": "example.com/ready", "status": "True"}],
                                        "containerStatuses": [running]})
    set_status(http, base + "crash", {"phase": "Running", "containerStatuses": [
        {"name": "c", "image": "busybox:1.36", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
    set_status(http, base + "init", {"phase": "Pending", "initContainerStatuses": [
        {"name": "setup", "image": "busybox:1.36", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"running": {"startedAt": ago(seconds=5)}}}]})
    set_status(http, base + "done", {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "image": "busybox:1.36", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    ok(kubectl("delete", "pod", "gone", "-n", kns, "--wait=false"))  # bound to a node: stays, Terminating

    out = ok(kubectl("get", "pods", "-n", kns))
    assert out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = by_name(parse_table(out))
    assert set(rows) == {"running", "crash", "init", "done", "pending", "gone"}
    assert (rows["running"]["READY"], rows["running"]["STATUS"], rows["running"]["RESTARTS"]) == ("1/1", "Running", "3 (20m ago)")
    assert (rows["crash"]["READY"], rows["crash"]["STATUS"]) == ("0/1", "CrashLoopBackOff")
    assert rows["init"]["STATUS"] == "Init:0/1"
    assert rows["done"]["STATUS"] == "Completed"
    assert (rows["pending"]["STATUS"], rows["pending"]["RESTARTS"]) == ("Pending", "0")
    assert rows["gone"]["STATUS"] == "Terminating"
    assert all(AGE.match(r["AGE"]) for r in rows.values())

    wide = get_table(kubectl, "pods", "-n", kns, "-o", "wide")
    assert list(wide[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    w = by_name(wide)
    assert (w["running"]["IP"], w["running"]["NODE"], w["running"]["READINESS GATES"]) == ("10.1.2.3", "node-a", "1/1")
    assert (w["pending"]["IP"], w["pending"]["NODE"], w["pending"]["NOMINATED NODE"]) == ("<none>", "<none>", "<none>")

    # a single object is a Table too
    one = get_table(kubectl, "pod", "crash", "-n", kns)
    assert [r["NAME"] for r in one] == ["crash"] and one[0]["STATUS"] == "CrashLoopBackOff"
    ok(kubectl("delete", "pod", "gone", "-n", kns, "--grace-period=0", "--force"))


# ------------------------------------------------------------------------------------ nodes
def test_node_columns(kubectl: Kubectl, http: httpx.Client) -> None:
    name = "n-" + uuid.uuid4().hex[:8]
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": True}}
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node)))
    set_status(http, f"/api/v1/nodes/{name}", {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": "192.168.5.7"}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": "v1.30.9", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                     "containerRuntimeVersion": "docker://27.1", "machineID": "", "systemUUID": "", "bootID": "",
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}})
    rows = get_table(kubectl, "nodes", "--field-selector", f"metadata.name={name}", "-o", "wide")
    assert list(rows[0]) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                             "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert rows == [{"NAME": name, "STATUS": "Ready,SchedulingDisabled", "ROLES": "control-plane,worker",
                     "AGE": rows[0]["AGE"], "VERSION": "v1.30.9", "INTERNAL-IP": "192.168.5.7",
                     "EXTERNAL-IP": "<none>", "OS-IMAGE": "Debian GNU/Linux 12", "KERNEL-VERSION": "6.1.0",
                     "CONTAINER-RUNTIME": "docker://27.1"}]
    ok(kubectl("uncordon", name))
    assert get_table(kubectl, "node", name)[0]["STATUS"] == "Ready"
    ok(kubectl("delete", "node", name))


# -------------------------------------------------------------------------------- workloads
def test_workload_columns(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    sel = {"matchLabels": {"app": "w"}}
    two = (container("web", "nginx:1.25"), container("log", "busybox:1.36"))
    apply(kubectl, kns,
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 3, "selector": sel, "template": template({"app": "w"}, *two)}},
          {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
           "spec": {"replicas": 2, "selector": sel, "template": template({"app": "w"})}},
          {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds"},
           "spec": {"selector": sel, "template": {**template({"app": "w"}), "spec": {
               "nodeSelector": {"disk": "ssd"}, "containers": [container()]}}}},
          {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "sts"},
           "spec": {"replicas": 2, "serviceName": "sts", "selector": sel, "template": template({"app": "w"})}},
          {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job"},
           "spec": {"completions": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [container()]}}}},
          {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron"},
           "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
               "spec": {"restartPolicy": "Never", "containers": [container()]}}}}}})
    apps, batch = f"/apis/apps/v1/namespaces/{kns}", f"/apis/batch/v1/namespaces/{kns}"
    set_status(http, f"{apps}/deployments/d", {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 1})
    set_status(http, f"{apps}/replicasets/rs", {"replicas": 2, "readyReplicas": 1})
    set_status(http, f"{apps}/daemonsets/ds", {"desiredNumberScheduled": 4, "currentNumberScheduled": 3, "numberReady": 2,
                                               "updatedNumberScheduled": 3, "numberAvailable": 2, "numberMisscheduled": 0})
    set_status(http, f"{apps}/statefulsets/sts", {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2})
    set_status(http, f"{batch}/jobs/job", {"succeeded": 2, "startTime": ago(seconds=100), "completionTime": ago(seconds=60),
                                           "conditions": [{"type": "Complete", "status": "True"}]})

    d = get_table(kubectl, "deployments", "-n", kns, "-o", "wide")
    assert list(d[0]) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert {k: v for k, v in d[0].items() if k != "AGE"} == {
        "NAME": "d", "READY": "1/3", "UP-TO-DATE": "3", "AVAILABLE": "1", "CONTAINERS": "web,log",
        "IMAGES": "nginx:1.25,busybox:1.36", "SELECTOR": "app=w"}
    rs = get_table(kubectl, "rs", "-n", kns, "-o", "wide")
    assert list(rs[0]) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert (rs[0]["DESIRED"], rs[0]["CURRENT"], rs[0]["READY"], rs[0]["SELECTOR"]) == ("2", "2", "1", "app=w")
    ds = get_table(kubectl, "ds", "-n", kns)
    assert list(ds[0]) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    assert [ds[0][k] for k in ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR")] == \
        ["4", "3", "2", "3", "2", "disk=ssd"]
    sts = get_table(kubectl, "sts", "-n", kns, "-o", "wide")
    assert list(sts[0]) == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"] and sts[0]["READY"] == "2/2"
    job = get_table(kubectl, "jobs", "-n", kns)
    assert list(job[0]) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert (job[0]["STATUS"], job[0]["COMPLETIONS"], job[0]["DURATION"]) == ("Complete", "2/2", "40s")
    cron = get_table(kubectl, "cronjobs", "-n", kns, "-o", "wide")
    assert list(cron[0]) == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE", "CONTAINERS",
                             "IMAGES", "SELECTOR"]
    assert [cron[0][k] for k in ("SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE")] == \
        ["*/5 * * * *", "<none>", "False", "0", "<none>"]


# ---------------------------------------------------------------------- the other kinds
def test_core_and_rbac_columns(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    apply(kubectl, kns,
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
           "spec": {"type": "NodePort", "selector": {"app": "w"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cip"},
           "spec": {"ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}},
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "example.com"}},
          {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "np"},
           "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 8080}]}]},
          {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "np-1"},
           "addressType": "IPv4", "ports": [{"port": 8080}],
           "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)]},
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"},
           "binaryData": {"c": "AA=="}},
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "type": "Opaque", "stringData": {"pw": "hunter2"}},
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "secrets": [{"name": "sec"}]},
          {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"},
           "spec": {"holderIdentity": "scheduler-1", "leaseDurationSeconds": 15}},
          {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev1"}, "type": "Warning", "reason": "BackOff",
           "message": "Back-off restarting failed container ", "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": kns},
           "count": 4, "firstTimestamp": ago(days=3), "lastTimestamp": ago(days=2, hours=3, minutes=10),
           "source": {"component": "kubelet", "host": "node-a"}},
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
           "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "read"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
           "subjects": [{"kind": "User", "name": "ann", "apiGroup": "rbac.authorization.k8s.io"},
                        {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"},
                        {"kind": "ServiceAccount", "name": "sa", "namespace": kns}]})

    svc = by_name(get_table(kubectl, "svc", "-n", kns, "-o", "wide"))
    assert list(svc["np"]) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    np_spec = http.get(f"/api/v1/namespaces/{kns}/services/np").json()["spec"]
    node_port = np_spec["ports"][0]["nodePort"]  # allocated by the apiserver
    assert [svc["np"][k] for k in ("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "SELECTOR")] == \
        ["NodePort", np_spec.get("clusterIP") or "<none>", "<none>", f"80:{node_port}/TCP", "app=w"]
    assert 30000 <= node_port <= 32767
    assert [svc["cip"][k] for k in ("TYPE", "PORT(S)", "SELECTOR")] == ["ClusterIP", "80/TCP,53/UDP", "<none>"]
    assert [svc["ext"][k] for k in ("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "SELECTOR")] == \
        ["ExternalName", "<none>", "example.com", "<none>", "<none>"]
    ep = get_table(kubectl, "endpoints", "-n", kns)
    assert list(ep[0]) == ["NAME", "ENDPOINTS", "AGE"] and ep[0]["ENDPOINTS"] == "10.0.0.1:8080,10.0.0.2:8080"
    eps = get_table(kubectl, "endpointslices", "-n", kns)
    assert list(eps[0]) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert [eps[0][k] for k in ("ADDRESSTYPE", "PORTS", "ENDPOINTS")] == ["IPv4", "8080", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."]
    cm = get_table(kubectl, "cm", "cm", "-n", kns)
    assert list(cm[0]) == ["NAME", "DATA", "AGE"] and cm[0]["DATA"] == "3"
    sec = get_table(kubectl, "secrets", "sec", "-n", kns)
    assert list(sec[0]) == ["NAME", "TYPE", "DATA", "AGE"] and (sec[0]["TYPE"], sec[0]["DATA"]) == ("Opaque", "1")
    sa = get_table(kubectl, "sa", "sa", "-n", kns)
    assert list(sa[0]) == ["NAME", "SECRETS", "AGE"] and sa[0]["SECRETS"] == "1"
    lease = get_table(kubectl, "leases", "-n", kns)
    assert list(lease[0]) == ["NAME", "HOLDER", "AGE"] and lease[0]["HOLDER"] == "scheduler-1"
    ev = get_table(kubectl, "events", "-n", kns)
    assert list(ev[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ev[0] == {"LAST SEEN": "2d3h", "TYPE": "Warning", "REASON": "BackOff", "OBJECT": "pod/web-1",
                     "MESSAGE": "Back-off restarting failed container"}
    evw = get_table(kubectl, "events", "-n", kns, "-o", "wide")
    assert list(evw[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
                            "COUNT", "NAME"]
    assert [evw[0][k] for k in ("SOURCE", "FIRST SEEN", "COUNT", "NAME")] == ["kubelet, node-a", "3d", "4", "ev1"]
    role = get_table(kubectl, "roles", "-n", kns)
    assert list(role[0]) == ["NAME", "CREATED AT"]  # Kubernetes' default table: no printer for roles
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", role[0]["CREATED AT"])
    rb = get_table(kubectl, "rolebindings", "-n", kns, "-o", "wide")
    assert list(rb[0]) == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert [rb[0][k] for k in ("ROLE", "USERS", "GROUPS", "SERVICEACCOUNTS")] == ["Role/reader", "ann", "devs", f"{kns}/sa"]
    ns_rows = get_table(kubectl, "namespace", kns)
    assert list(ns_rows[0]) == ["NAME", "STATUS", "AGE"] and ns_rows[0]["STATUS"] == "Active"


def test_cluster_scoped_rbac(kubectl: Kubectl) -> None:
    name = "cr-" + uuid.uuid4().hex[:8]
    docs = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
             "subjects": [{"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}]}]
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs)))
    cr = get_table(kubectl, "clusterrole", name)
    assert list(cr[0]) == ["NAME", "CREATED AT"] and cr[0]["NAME"] == name
    crb = get_table(kubectl, "clusterrolebinding", name, "-o", "wide")
    assert [crb[0][k] for k in ("ROLE", "USERS", "GROUPS", "SERVICEACCOUNTS")] == [f"ClusterRole/{name}", "", "ops", ""]
    ok(kubectl("delete", "-f", "-", input=yaml.safe_dump_all(docs)))


# ----------------------------------------------------------------------- output and filters
def test_formats_selectors_and_sorting(kubectl: Kubectl, kns: str) -> None:
    cms = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "labels": {"tier": t}}, "data": {"k": v}}
           for n, t, v in (("b-two", "back", "2"), ("a-one", "front", "1"), ("c-three", "back", "3"))]
    apply(kubectl, kns, *cms)
    listing = json.loads(ok(kubectl("get", "cm", "-n", kns, "-l", "tier", "-o", "json")))
    assert listing["kind"] == "List" and sorted(i["metadata"]["name"] for i in listing["items"]) == ["a-one", "b-two", "c-three"]
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in listing["items"])
    one = yaml.safe_load(ok(kubectl("get", "cm", "a-one", "-n", kns, "-o", "yaml")))
    assert one["data"] == {"k": "1"} and one["metadata"]["labels"] == {"tier": "front"}
    assert ok(kubectl("get", "cm", "-n", kns, "-l", "tier=back", "-o", "name")).split() == \
        ["configmap/b-two", "configmap/c-three"]
    assert ok(kubectl("get", "cm", "-n", kns, "-l", "tier in (front)", "-o", "jsonpath={.items[*].data.k}")) == "1"
    assert ok(kubectl("get", "cm", "-n", kns, "--field-selector", "metadata.name=c-three", "-o", "name")) == \
        "configmap/c-three\n"
    labels = by_name(get_table(kubectl, "cm", "-n", kns, "-l", "tier", "--show-labels"))
    assert labels["a-one"]["LABELS"] == "tier=front" and list(labels["a-one"]) == ["NAME", "DATA", "AGE", "LABELS"]
    col = get_table(kubectl, "cm", "-n", kns, "-l", "tier", "-L", "tier")
    assert [r["TIER"] for r in col] == ["front", "back", "back"]  # list order is by name
    ordered = [r["NAME"] for r in get_table(kubectl, "cm", "-n", kns, "-l", "tier", "--sort-by", ".data.k")]
    assert ordered == ["a-one", "b-two", "c-three"]
    desc = [r["NAME"] for r in get_table(kubectl, "cm", "-n", kns, "-l", "tier", "--sort-by", "{.metadata.labels.tier}")]
    assert desc[-1] == "a-one"
    paged = get_table(kubectl, "cm", "-n", kns, "-l", "tier", "--chunk-size=1")  # Table pages via metadata.continue
    assert [r["NAME"] for r in paged] == ["a-one", "b-two", "c-three"]
    assert ok(kubectl("get", "cm", "-n", kns, "-l", "tier=none")) == ""
    everywhere = get_table(kubectl, "cm", "-A", "-l", "tier=front")
    assert list(everywhere[0]) == ["NAMESPACE", "NAME", "DATA", "AGE"]
    assert {(r["NAMESPACE"], r["NAME"]) for r in everywhere} >= {(kns, "a-one")}
    custom = get_table(kubectl, "cm", "-n", kns, "-l", "tier", "-o", "custom-columns=N:.metadata.name,K:.data.k")
    assert custom == [{"N": "a-one", "K": "1"}, {"N": "b-two", "K": "2"}, {"N": "c-three", "K": "3"}]
    many = ok(kubectl("get", "cm,sa", "-n", kns, "-l", "tier"))
    assert "configmap/a-one" in many


def test_table_wire_format(http: httpx.Client, kns: str) -> None:
    """What kubectl receives: Table JSON, row objects, includeObject, and watch events."""
    r = http.post(f"/api/v1/namespaces/{kns}/configmaps", json={"metadata": {"name": "w1", "labels": {"a": "b"}}, "data": {"x": "1"}})
    assert r.status_code == 201
    r = http.get(f"/api/v1/namespaces/{kns}/configmaps", headers={"Accept": TABLE_ACCEPT})
    t = r.json()
    assert (t["kind"], t["apiVersion"]) == ("Table", "meta.k8s.io/v1") and t["metadata"]["resourceVersion"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in t["columnDefinitions"]] == [
        ("Name", "string", "name", 0), ("Data", "string", "", 0), ("Age", "string", "", 0)]
    row = t["rows"][0]
    assert row["cells"][:2] == ["w1", 1] and AGE.match(row["cells"][2])
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["apiVersion"] == "meta.k8s.io/v1"
    assert row["object"]["metadata"]["labels"] == {"a": "b"} and "data" not in row["object"]
    full = http.get(f"/api/v1/namespaces/{kns}/configmaps/w1", params={"includeObject": "Object"},
                    headers={"Accept": TABLE_ACCEPT}).json()
    assert full["rows"][0]["object"]["data"] == {"x": "1"} and full["rows"][0]["object"]["kind"] == "ConfigMap"
    none = http.get(f"/api/v1/namespaces/{kns}/configmaps", params={"includeObject": "None"},
                    headers={"Accept": TABLE_ACCEPT}).json()
    assert "object" not in none["rows"][0]
    beta = http.get(f"/api/v1/namespaces/{kns}/configmaps",
                    headers={"Accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"}).json()
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    bad = http.get(f"/api/v1/namespaces/{kns}/configmaps", params={"includeObject": "Everything"},
                   headers={"Accept": TABLE_ACCEPT})
    assert bad.status_code == 400 and "unrecognized includeObject value" in bad.json()["message"]
    plain = http.get(f"/api/v1/namespaces/{kns}/configmaps", headers={"Accept": "application/json"}).json()
    assert plain["kind"] == "ConfigMapList"
    meta = http.get(f"/api/v1/namespaces/{kns}/configmaps",
                    headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}).json()
    assert meta["kind"] == "PartialObjectMetadataList" and meta["items"][0]["metadata"]["name"] == "w1"

    # watch: a Table per event; the first carries the column definitions, the others do not
    rv = t["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []
    with http.stream("GET", f"/api/v1/namespaces/{kns}/configmaps",
                     params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "10"},
                     headers={"Accept": TABLE_ACCEPT}) as stream:
        for i, name in enumerate(("w2", "w3")):
            assert http.post(f"/api/v1/namespaces/{kns}/configmaps",
                             json={"metadata": {"name": name}, "data": {"n": str(i)}}).status_code == 201
        for line in stream.iter_lines():
            events.append(orjson.loads(line))
            if len(events) == 2:
                break
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
    assert events[0]["object"]["columnDefinitions"][0]["name"] == "Name"
    assert events[1]["object"]["columnDefinitions"] is None
    assert [e["object"]["rows"][0]["cells"][0] for e in events] == ["w2", "w3"]


# --------------------------------------------------------------------- discovery and info
def test_api_resources_versions_and_version(kubectl: Kubectl) -> None:
    out = ok(kubectl("api-resources"))
    header = out.splitlines()[0].split()
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = by_name(parse_table(out))
    assert rows["pods"] == {"NAME": "pods", "SHORTNAMES": "po", "APIVERSION": "v1", "NAMESPACED": "true", "KIND": "Pod"}
    assert rows["deployments"] == {"NAME": "deployments", "SHORTNAMES": "deploy", "APIVERSION": "apps/v1",
                                   "NAMESPACED": "true", "KIND": "Deployment"}
    assert rows["nodes"]["NAMESPACED"] == "false" and rows["leases"]["APIVERSION"] == "coordination.k8s.io/v1"
    assert not any("/" in n for n in rows)  # subresources are not listed
    assert "warning" not in (kubectl("api-resources").stderr.lower())
    namespaced = ok(kubectl("api-resources", "--namespaced=false", "-o", "name")).split()
    assert "nodes" in namespaced and "pods" not in namespaced
    versions = ok(kubectl("api-versions")).split()
    assert {"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"} <= set(versions)
    version = json.loads(ok(kubectl("version", "-o", "json")))
    assert version["serverVersion"]["gitVersion"] == VERSION["gitVersion"]
    assert version["clientVersion"]["minor"] == VERSION["minor"]  # the dispatcher picked the matching kubectl
    info = re.sub(r"\x1b\[[0-9;]*m", "", ok(kubectl("cluster-info")))  # cluster-info always colours
    assert "Kubernetes control plane is running at https://127.0.0.1:" in info


def test_explain_uses_openapi_v3(kubectl: Kubectl) -> None:
    out = ok(kubectl("explain", "pod.spec"))
    assert out.startswith("KIND:       Pod\nVERSION:    v1\n")
    assert "FIELD: spec <PodSpec>" in out
    assert re.search(r"^  containers\t<\[\]Container>", out, re.M)
    assert re.search(r"^  nodeSelector\t<map\[string\]string>", out, re.M)
    deploy = ok(kubectl("explain", "deployment.spec.strategy.rollingUpdate"))
    assert deploy.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert re.search(r"^  maxSurge\t<IntOrString>", deploy, re.M)
    res = ok(kubectl("explain", "pods.spec.containers.resources"))
    assert re.search(r"^  limits\t<map\[string\]Quantity>", res, re.M)
    missing = kubectl("explain", "pod.spec.nope")
    assert missing.returncode != 0 and 'field "nope" does not exist' in missing.stderr


def test_openapi_documents(http: httpx.Client) -> None:
    index = http.get("/openapi/v3").json()
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    doc = http.get(url)
    assert doc.status_code == 200 and "immutable" in doc.headers["cache-control"]
    spec = doc.json()
    patch = spec["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])
    assert spec["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert "io.k8s.api.core.v1.PodTemplateSpec" in spec["components"]["schemas"]
    assert "io.k8s.api.autoscaling.v1.Scale" in spec["components"]["schemas"]
    stale = http.get("/openapi/v3/apis/apps/v1?hash=0", follow_redirects=False)
    assert stale.status_code == 301 and stale.headers["location"] == url
    assert http.get("/openapi/v3/apis/nope/v1").status_code == 404
    pb = http.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert pb.status_code == 200 and pb.content == b""
    assert pb.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    v2 = http.get("/openapi/v2", headers={"Accept": "application/json"}).json()
    assert v2["swagger"] == "2.0" and v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"] == {
        "$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}


# ---------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (182, "3m2s"), (600, "10m"),
    (179 * 60 + 59, "179m"), (3 * 3600, "3h"), (4 * 3600 + 60 * 5, "4h5m"), (8 * 3600 + 5, "8h"), (47 * 3600, "47h"),
    (51 * 3600, "2d3h"), (72 * 3600, "3d"), (8 * 86400, "8d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_negotiation() -> None:
    assert negotiate(TABLE_ACCEPT) is not None and negotiate(TABLE_ACCEPT).kind == "Table"  # type: ignore[union-attr]
    assert negotiate("application/json") is None and negotiate("") is None and negotiate("*/*") is None
    assert negotiate("application/json, application/json;as=Table;v=v1;g=meta.k8s.io") is None  # first wins
    proto_first = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"
    assert negotiate(proto_first) is not None

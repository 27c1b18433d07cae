"""Writing with the real kubectl: create, apply, delete, edit, patch, label, scale, set image, wait, get -w.

Every test checks the stored result through the API, not only kubectl's exit code. kubectl
validates with `--validate=strict` by default, so these also exercise the OpenAPI documents
(kubectl leaves validation to the server once the v3 document says PATCH takes
`fieldValidation`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.kubectl.conftest import KUBECTL, Kubectl, ok, parse_table, wait_until

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def cm(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data}


def deployment(name: str, image: str = "nginx:1.25", env: list[dict[str, str]] | None = None,
               replicas: int = 1) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "web", "image": image}
    if env is not None:
        c["env"] = env
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [c]}}}}


def get(http: httpx.Client, path: str) -> dict[str, Any]:
    r = http.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def write(path: Path, *docs: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def test_create_and_delete_files_and_folders(kubectl: Kubectl, http: httpx.Client, kns: str, workdir: Path) -> None:
    multi = write(workdir / "multi.yaml", cm("one", {"a": "1"}), cm("two", {"b": "2"}),
                  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    out = ok(kubectl("create", "-n", kns, "-f", multi))
    assert out.splitlines() == ["configmap/one created", "configmap/two created", "serviceaccount/robot created"]
    assert get(http, f"/api/v1/namespaces/{kns}/configmaps/two")["data"] == {"b": "2"}
    again = kubectl("create", "-n", kns, "-f", multi)
    assert again.returncode != 0
    assert 'Error from server (AlreadyExists): error when creating "' in again.stderr
    assert 'configmaps "one" already exists' in again.stderr

    folder = workdir / "folder"
    folder.mkdir()
    write(folder / "a.yaml", cm("fa", {"x": "1"}))
    (folder / "b.json").write_text(json.dumps(cm("fb", {"y": "2"})))
    out = ok(kubectl("apply", "-n", kns, "-f", str(folder)))
    assert sorted(out.splitlines()) == ["configmap/fa created", "configmap/fb created"]

    out = ok(kubectl("delete", "-n", kns, "-f", str(folder)))
    assert sorted(out.splitlines()) == ['configmap "fa" deleted', 'configmap "fb" deleted']
    ok(kubectl("delete", "-n", kns, "-f", multi))
    names = {i["metadata"]["name"] for i in get(http, f"/api/v1/namespaces/{kns}/configmaps")["items"]}
    assert not names & {"one", "two", "fa", "fb"}
    assert http.get(f"/api/v1/namespaces/{kns}/serviceaccounts/robot").status_code == 404


def test_apply_create_idempotent_change_and_prune_field(kubectl: Kubectl, http: httpx.Client, kns: str,
                                                        workdir: Path) -> None:
    path = f"/apis/apps/v1/namespaces/{kns}/deployments/app"
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    manifest = write(workdir / "app.yaml", deployment("app", env=env))
    assert ok(kubectl("apply", "-n", kns, "-f", manifest)).strip() == "deployment.apps/app created"
    first = get(http, path)
    applied = first["metadata"]["annotations"][LAST_APPLIED]
    # kubectl's own JSON of the manifest (plus the namespace and an empty annotations map), kept verbatim
    expected = deployment("app", env=env)
    expected["metadata"] = {"annotations": {}, "labels": {"app": "app"}, "name": "app", "namespace": kns}
    assert applied == json.dumps(expected, sort_keys=True, separators=(",", ":")) + "\n"

    # the same manifest again: nothing to change, nothing written
    assert ok(kubectl("apply", "-n", kns, "-f", manifest)).strip() == "deployment.apps/app unchanged"
    assert get(http, path)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    # a change: the image moves, env B (removed from the manifest) goes, a new annotation arrives
    changed = deployment("app", image="nginx:1.27", env=[{"name": "A", "value": "1"}])
    changed["metadata"]["annotations"] = {"team": "web"}
    write(workdir / "app.yaml", changed)
    assert ok(kubectl("apply", "-n", kns, "-f", manifest)).strip() == "deployment.apps/app configured"
    now = get(http, path)
    c = now["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.27" and c["env"] == [{"name": "A", "value": "1"}]
    assert now["metadata"]["annotations"]["team"] == "web"
    assert json.loads(now["metadata"]["annotations"][LAST_APPLIED])["spec"]["template"]["spec"]["containers"][0]["env"] == \
        [{"name": "A", "value": "1"}]
    assert now["metadata"]["generation"] == 2

    # fields set by others survive a re-apply (three-way merge keeps what apply never owned)
    ok(kubectl("label", "deployment", "app", "-n", kns, "owner=ops"))
    ok(kubectl("apply", "-n", kns, "-f", manifest))
    assert get(http, path)["metadata"]["labels"] == {"app": "app", "owner": "ops"}

    # a ConfigMap key removed from the manifest is removed from the object
    cm_file = write(workdir / "cm.yaml", cm("conf", {"keep": "1", "drop": "2"}))
    ok(kubectl("apply", "-n", kns, "-f", cm_file))
    write(workdir / "cm.yaml", cm("conf", {"keep": "1"}))
    ok(kubectl("apply", "-n", kns, "-f", cm_file))
    assert get(http, f"/api/v1/namespaces/{kns}/configmaps/conf")["data"] == {"keep": "1"}


def test_delete_waits_for_the_object_to_go(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "free"},
                           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    bound = {**pod, "metadata": {"name": "bound"}, "spec": {**pod["spec"], "nodeName": "node-x"}}
    ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump_all([pod, bound])))
    # no node: deleted at once, and kubectl returns once it is gone
    assert ok(kubectl("delete", "pod", "free", "-n", kns)).strip() == 'pod "free" deleted'
    assert http.get(f"/api/v1/namespaces/{kns}/pods/free").status_code == 404
    # bound to a node whose kubelet never confirms: graceful deletion leaves it Terminating...
    ok(kubectl("delete", "pod", "bound", "-n", kns, "--wait=false"))
    assert get(http, f"/api/v1/namespaces/{kns}/pods/bound")["metadata"]["deletionTimestamp"]
    # ...until a forced delete
    forced = kubectl("delete", "pod", "bound", "-n", kns, "--grace-period=0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert 'pod "bound" force deleted' in forced.stdout
    assert "Immediate deletion does not wait for confirmation" in forced.stderr
    assert http.get(f"/api/v1/namespaces/{kns}/pods/bound").status_code == 404
    missing = kubectl("delete", "pod", "bound", "-n", kns)
    assert missing.returncode != 0 and 'pods "bound" not found' in missing.stderr
    assert ok(kubectl("delete", "pod", "bound", "-n", kns, "--ignore-not-found")) == ""


def test_edit_patch_label_annotate(kubectl: Kubectl, http: httpx.Client, kns: str, workdir: Path) -> None:
    path = f"/apis/apps/v1/namespaces/{kns}/deployments/ed"
    ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump(deployment("ed", env=[{"name": "A", "value": "1"}]))))
    editor = workdir / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/image: nginx:1.25/image: nginx:edited/' \"$1\"\n")
    editor.chmod(0o755)
    out = ok(kubectl("edit", "deployment", "ed", "-n", kns, env={"KUBE_EDITOR": str(editor)}))
    assert out.strip() == "deployment.apps/ed edited"
    assert get(http, path)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:edited"
    same = workdir / "same.sh"
    same.write_text("#!/bin/sh\ntrue\n")
    same.chmod(0o755)
    assert "Edit cancelled, no changes made." in kubectl("edit", "deployment", "ed", "-n", kns,
                                                         env={"KUBE_EDITOR": str(same)}).stderr

    # strategic merge (the default): env merges by name
    ok(kubectl("patch", "deployment", "ed", "-n", kns, "-p",
               '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}'))
    env = get(http, path)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    # JSON merge patch: a list is replaced
    ok(kubectl("patch", "deployment", "ed", "-n", kns, "--type", "merge", "-p", '{"spec":{"replicas":4}}'))
    assert get(http, path)["spec"]["replicas"] == 4
    # JSON patch
    ok(kubectl("patch", "deployment", "ed", "-n", kns, "--type", "json",
               "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/env/0/value","value":"3"}]'))
    assert get(http, path)["spec"]["template"]["spec"]["containers"][0]["env"][0] == {"name": "B", "value": "3"}
    bad = kubectl("patch", "deployment", "ed", "-n", kns, "--type", "json",
                  "-p", '[{"op":"test","path":"/spec/replicas","value":9}]')
    assert bad.returncode != 0
    assert get(http, path)["spec"]["replicas"] == 4

    ok(kubectl("label", "deployment", "ed", "-n", kns, "tier=web", "env=prod"))
    ok(kubectl("label", "deployment", "ed", "-n", kns, "env-"))
    assert get(http, path)["metadata"]["labels"] == {"app": "ed", "tier": "web"}
    clash = kubectl("label", "deployment", "ed", "-n", kns, "tier=db")
    assert clash.returncode != 0 and "'tier' already has a value (web)" in clash.stderr
    ok(kubectl("label", "deployment", "ed", "-n", kns, "tier=db", "--overwrite"))
    ok(kubectl("annotate", "deployment", "ed", "-n", kns, "note=hello world"))
    meta = get(http, path)["metadata"]
    assert meta["labels"]["tier"] == "db" and meta["annotations"]["note"] == "hello world"
    # status writes through the subresource only
    ok(kubectl("patch", "deployment", "ed", "-n", kns, "--subresource=status", "--type=merge",
               "-p", '{"status":{"observedGeneration":1,"replicas":4}}'))
    assert get(http, path)["status"]["replicas"] == 4


def test_scale_and_set_image(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{kns}/deployments/sc"
    ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump(deployment("sc", replicas=2))))
    assert ok(kubectl("scale", "deployment", "sc", "-n", kns, "--replicas=5")).strip() == "deployment.apps/sc scaled"
    assert get(http, path)["spec"]["replicas"] == 5
    stale = kubectl("scale", "deployment", "sc", "-n", kns, "--replicas=1", "--current-replicas=2")
    assert stale.returncode != 0 and "Expected replicas to be 2, was 5" in stale.stderr
    scale = get(http, path + "/scale")
    assert (scale["kind"], scale["apiVersion"], scale["spec"]["replicas"]) == ("Scale", "autoscaling/v1", 5)
    assert ok(kubectl("set", "image", "deployment/sc", "web=nginx:2", "-n", kns)).strip() == \
        "deployment.apps/sc image updated"
    obj = get(http, path)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2" and obj["metadata"]["generation"] == 3
    unknown = kubectl("set", "image", "deployment/sc", "nope=nginx:3", "-n", kns)
    assert unknown.returncode != 0 and 'unable to find container named "nope"' in unknown.stderr


def test_get_watch_prints_changes(kubectl_env: dict[str, str], kubectl: Kubectl, kns: str) -> None:
    ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump(cm("w0", {"n": "0"}))))
    argv = [KUBECTL, "--kubeconfig", kubectl_env["KUBECONFIG"], "--cache-dir", kubectl_env["KUBECACHEDIR"],
            "get", "configmaps", "-n", kns, "-w", "--output-watch-events"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl_env,
                            start_new_session=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")) if proc.stdout else None,
                                  daemon=True)
        reader.start()
        wait_until(lambda: len(lines) >= 2, 20, "the initial listing")
        ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump(cm("w1", {"n": "1", "m": "2"}))))
        ok(kubectl("label", "configmap", "w0", "-n", kns, "x=y"))
        ok(kubectl("delete", "configmap", "w1", "-n", kns))
        wait_until(lambda: len(lines) >= 5, 20, "the watch events")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    rows = parse_table("\n".join(lines))
    assert list(rows[0]) == ["EVENT", "NAME", "DATA", "AGE"]
    assert [(r["EVENT"], r["NAME"], r["DATA"]) for r in rows[:4]] == [
        ("ADDED", "w0", "1"), ("ADDED", "w1", "2"), ("MODIFIED", "w0", "1"), ("DELETED", "w1", "2")]
    assert sum(1 for ln in lines if ln.startswith("EVENT")) == 1  # one header for the whole stream


def test_wait_for_delete_and_condition(kubectl: Kubectl, http: httpx.Client, kns: str) -> None:
    ok(kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump_all([
        {**cm("held", {"a": "1"}), "metadata": {"name": "held", "finalizers": ["example.com/hold"]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiter"},
         "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}])))
    ok(kubectl("delete", "configmap", "held", "-n", kns, "--wait=false"))
    # kubectl wait blocks: run it in a thread, then release the finalizer
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    t = threading.Thread(target=lambda: result.__setitem__("r", kubectl(
        "wait", "--for=delete", "configmap/held", "-n", kns, "--timeout=30s")))
    t.start()
    time.sleep(1.0)
    assert t.is_alive()  # still waiting on the finalizer
    ok(kubectl("patch", "configmap", "held", "-n", kns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'))
    t.join(40)
    assert result["r"].returncode == 0, result["r"].stderr
    assert result["r"].stdout.strip() == "configmap/held condition met"

    t = threading.Thread(target=lambda: result.__setitem__("c", kubectl(
        "wait", "--for=condition=Ready", "pod/waiter", "-n", kns, "--timeout=30s")))
    t.start()
    time.sleep(1.0)
    assert t.is_alive()
    r = http.patch(f"/api/v1/namespaces/{kns}/pods/waiter/status",
                   json={"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    t.join(40)
    assert result["c"].returncode == 0, result["c"].stderr
    assert result["c"].stdout.strip() == "pod/waiter condition met"
    timeout = kubectl("wait", "--for=condition=Ready=False", "pod/waiter", "-n", kns, "--timeout=1s")
    assert timeout.returncode != 0 and "timed out waiting for the condition" in timeout.stderr


def test_invalid_manifests_print_kubernetes_words(kubectl: Kubectl, kns: str, workdir: Path) -> None:
    no_image = write(workdir / "bad.yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                            "spec": {"containers": [{"name": "c"}]}})
    r = kubectl("create", "-n", kns, "-f", no_image)
    assert r.returncode == 1
    assert r.stderr.strip() == 'The Pod "x" is invalid: spec.containers[0].image: Required value'
    r = kubectl("apply", "-n", kns, "-f", no_image)
    assert r.returncode == 1 and 'The Pod "x" is invalid: spec.containers[0].image: Required value' in r.stderr

    unknown = write(workdir / "unknown.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"},
                                               "data": {"a": "1"}, "bogus": True})
    r = kubectl("create", "-n", kns, "-f", unknown)
    assert r.returncode == 1 and r.stderr.startswith("Error from server (BadRequest): ")
    assert 'cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"' in r.stderr
    assert ok(kubectl("create", "-n", kns, "-f", unknown, "--validate=false")).strip() == "configmap/u created"

    two_bad = write(workdir / "two.yaml", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                                           "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                                                    "template": {"metadata": {"labels": {"a": "c"}},
                                                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    r = kubectl("create", "-n", kns, "-f", two_bad)
    assert r.returncode == 1 and r.stderr == (
        'The Deployment "d" is invalid: \n'
        "* spec.replicas: Invalid value: -1: must be greater than or equal to 0\n"
        '* spec.template.metadata.labels: Invalid value: map[string]string{"a":"c"}: `selector` does not match '
        "template `labels`\n")
    no_ns = kubectl("create", "-n", "no-such-namespace", "-f", unknown, "--validate=false")
    assert no_ns.returncode == 1 and 'namespaces "no-such-namespace" not found' in no_ns.stderr


VERSIONED = sorted(Path(os.path.realpath(KUBECTL)).parent.glob("kubectl.1.*"), key=lambda p: int(p.name.split(".")[-1]))


@pytest.mark.parametrize("binary", VERSIONED, ids=[p.name for p in VERSIONED])
def test_kubectl_versions(binary: Path, kubectl_env: dict[str, str], http: httpx.Client, kns: str,
                          workdir: Path) -> None:
    """The dispatcher runs the kubectl matching /version; every shipped minor must work too."""
    def run(*args: str) -> str:
        argv = [str(binary), "--kubeconfig", kubectl_env["KUBECONFIG"], "--cache-dir", str(workdir / "cache"), *args]
        return ok(subprocess.run(argv, capture_output=True, text=True, timeout=60, env=kubectl_env))

    manifest = write(workdir / "d.yaml", deployment("v", env=[{"name": "A", "value": "1"}]))
    assert run("apply", "-n", kns, "-f", manifest).strip() == "deployment.apps/v created"
    assert run("apply", "-n", kns, "-f", manifest).strip() == "deployment.apps/v unchanged"
    write(workdir / "d.yaml", deployment("v", image="nginx:2", env=[]))
    assert run("apply", "-n", kns, "-f", manifest).strip() == "deployment.apps/v configured"
    spec = get(http, f"/apis/apps/v1/namespaces/{kns}/deployments/v")["spec"]["template"]["spec"]["containers"][0]
    assert spec["image"] == "nginx:2" and not spec.get("env")
    rows = parse_table(run("get", "deploy", "-n", kns, "-o", "wide"))
    assert list(rows[0]) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert (rows[0]["NAME"], rows[0]["READY"], rows[0]["IMAGES"]) == ("v", "0/1", "nginx:2")
    assert "KIND:       Deployment" in run("explain", "deployment.spec.replicas")
    run("scale", "deployment", "v", "-n", kns, "--replicas=2")
    assert get(http, f"/apis/apps/v1/namespaces/{kns}/deployments/v")["spec"]["replicas"] == 2
    assert run("delete", "-n", kns, "-f", manifest).strip() == 'deployment.apps "v" deleted'

"""The classic "Kubernetes from its parts" walkthrough, shared by the `kubenats up` test and the
Compose test: each step drives the cluster with the real kubectl and checks what a user sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

WEB_CMD = ["sh", "-c", "trap 'exit 0' TERM; hostname > /www/index.html; httpd -f -p 80 -h /www & wait"]


def web_pod(name: str, image: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": image, "command": WEB_CMD,
                                            "ports": [{"containerPort": 80}]}],
                            "terminationGracePeriodSeconds": 5}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


class Walkthrough:
    def __init__(self, kubeconfig: Path, home: Path, image: str, log: Callable[[str], None] = print) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        self.image = image
        self.log = log

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        r = subprocess.run(["kubectl", *args], env=self.env, input=input, capture_output=True, text=True,
                           timeout=120, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def wait(self, what: str, cond: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if cond():
                    self.log(f"ok: {what}")
                    return
            except (AssertionError, ValueError, KeyError, httpx.HTTPError) as e:
                last = e
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what} (last error: {last})")

    def pod(self, name: str, ns: str = "default") -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "pod", name, "-n", ns, "-o", "json")))

    def phase(self, name: str) -> str:
        return str(self.pod(name).get("status", {}).get("phase", ""))

    # ---- the steps ------------------------------------------------------------------
    def static_pod(self, manifests: Path, node: str) -> None:
        """a. a manifest dropped in the kubelet's folder runs; its mirror pod is listed; HTTP answers."""
        (manifests / "static-web.json").write_text(json.dumps(web_pod("static-web", self.image)))
        mirror = f"static-web-{node}"
        self.wait("static pod mirror Running", lambda: self.phase(mirror) == "Running")
        names = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True,
                               check=True).stdout.split()
        uid_part = [n for n in names if n.startswith(f"k8s_web_{mirror}_default_") or n.startswith("k8s_web_static-web")]
        assert uid_part, names
        assert any(n.startswith("k8s_POD_static-web") for n in names), names
        ip = self.pod(mirror)["status"]["podIP"]
        self.wait("static pod answers HTTP", lambda: httpx.get(f"http://{ip}/", timeout=3).status_code == 200)

    def node_ready(self, node: str) -> None:
        """b. kubectl get nodes shows the node Ready with its version."""
        def ready() -> bool:
            out = self.kubectl("get", "nodes", "--no-headers")
            row = next((line.split() for line in out.splitlines() if line.split()[0] == node), None)
            return bool(row) and row[1] == "Ready" and row[-1].startswith("v1.")
        self.wait("node Ready", ready)

    def pending_without_scheduler(self, node: str) -> None:
        """c. with no scheduler, a pod without nodeName stays Pending, one with nodeName runs."""
        self.apply(web_pod("pending", self.image))
        self.apply(web_pod("pinned", self.image, node))
        self.wait("pinned pod Running", lambda: self.phase("pinned") == "Running")
        time.sleep(3)
        assert self.phase("pending") == "Pending" and not self.pod("pending")["spec"].get("nodeName")

    def scheduled(self) -> None:
        """d. once the scheduler runs, the pending pod runs."""
        self.wait("pending pod scheduled and Running", lambda: self.phase("pending") == "Running")

    def deployment(self) -> list[str]:
        """e. a Deployment of 3 replicas gives 3 Running pods named <deployment>-<hash>-<5 chars>."""
        self.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": web_pod("x", self.image)["spec"]}}})

        def three() -> bool:
            out = self.kubectl("get", "deploy", "web", "--no-headers")
            return out.split()[1] == "3/3"
        self.wait("deployment 3/3", three, timeout=180)
        pods = json.loads(self.kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
        names = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
        assert len(names) == 3 and all(re.fullmatch(r"web-[a-z0-9]+-[a-z0-9]{5}", n) for n in names), names
        return names

    def nodeport(self, node_ip: str, pod_names: list[str]) -> None:
        """f. a NodePort Service (30073) answers on the node's IP and spreads over the pods."""
        self.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"type": "NodePort", "selector": {"app": "web"},
                             "ports": [{"port": 80, "targetPort": 80, "nodePort": 30073}]}})
        seen: set[str] = set()

        def answers() -> bool:
            for _ in range(30):
                r = httpx.get(f"http://{node_ip}:30073/", timeout=3)
                seen.add(r.text.strip())
            return len(seen & set(pod_names)) > 1
        self.wait("NodePort 30073 reaches more than one pod", answers, timeout=90)

    def clusterip(self, pod_names: list[str], client_pod: str = "pinned") -> None:
        """Behind a ClusterIP Service, 60 requests from the host and 60 from another pod reach every pod."""
        self.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-cip"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 80}]}})
        ip = self.kubectl("get", "svc", "web-cip", "-o", "jsonpath={.spec.clusterIP}").strip()
        # the network rule: a service IP must be local before anything connects to it
        route = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True, check=True).stdout
        assert route.startswith("local "), route
        want = set(pod_names)

        def from_host() -> bool:
            seen = {httpx.get(f"http://{ip}:8080/", timeout=3).text.strip() for _ in range(60)}
            return seen == want
        self.wait(f"60 requests from the host reach all {len(want)} pods", from_host, timeout=60)
        loop = f"i=0; while [ $i -lt 60 ]; do wget -qO- http://{ip}:8080/; i=$((i+1)); done"

        def from_pod() -> bool:
            seen = set(self.kubectl("exec", client_pod, "--", "sh", "-c", loop).split())
            return seen == want
        self.wait(f"60 requests from pod {client_pod} reach all {len(want)} pods", from_pod, timeout=60)

    def scale_into_rotation(self, replicas: int) -> None:
        """Scaling the Deployment brings the new pods into the Service's rotation."""
        self.kubectl("scale", "deploy", "web", f"--replicas={replicas}")

        def ready() -> bool:
            return self.kubectl("get", "deploy", "web", "--no-headers").split()[1] == f"{replicas}/{replicas}"
        self.wait(f"deployment {replicas}/{replicas}", ready, timeout=120)
        pods = json.loads(self.kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
        self.clusterip([p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"])

    def kubectl_story(self, node: str) -> None:
        """describe, run, expose, set image and every rollout verb, against the real components."""
        out = self.kubectl("describe", "pod", "pending")
        assert "Events:" in out and f"Successfully assigned default/pending to {node}" in out, out
        assert "Started" in out and "kubelet" in out, out
        out = self.kubectl("describe", "node", node)
        assert "Ready" in out and "Capacity:" in out and "Non-terminated Pods:" in out, out
        out = self.kubectl("describe", "deployment", "web")
        assert "ScalingReplicaSet" in out and "RollingUpdateStrategy" in out, out
        out = self.kubectl("describe", "service", "web")
        assert "NodePort:" in out and "30073/TCP" in out, out
        assert "Scheduled" in self.kubectl("get", "events")

        self.kubectl("run", "one", f"--image={self.image}", "--", "sleep", "3600")
        self.wait("kubectl run pod Running", lambda: self.phase("one") == "Running")
        self.kubectl("expose", "deployment", "web", "--name=web-exp", "--port=80")
        self.wait("exposed service has endpoints", lambda: len(
            self.kubectl("get", "endpoints", "web-exp", "-o", "jsonpath={.subsets[*].addresses[*].ip}").split()) >= 3)

        # a second tag of the local image: a template change without any pull
        subprocess.run(["docker", "tag", self.image, self.image + "-v2"], check=True)
        self.kubectl("set", "image", "deployment/web", f"web={self.image}-v2")
        self.kubectl("rollout", "status", "deployment/web", "--timeout=180s")
        history = self.kubectl("rollout", "history", "deployment/web")
        assert "REVISION" in history and len([ln for ln in history.splitlines() if ln.strip()[:1].isdigit()]) >= 2, history
        self.kubectl("rollout", "undo", "deployment/web")
        self.kubectl("rollout", "status", "deployment/web", "--timeout=180s")
        image = self.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
        assert image == self.image, image
        self.kubectl("rollout", "pause", "deployment/web")
        assert self.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.paused}") == "true"
        self.kubectl("rollout", "resume", "deployment/web")
        before = set(self.kubectl("get", "pods", "-l", "app=web", "-o", "name").split())
        self.kubectl("rollout", "restart", "deployment/web")
        self.kubectl("rollout", "status", "deployment/web", "--timeout=180s")
        self.wait("restart replaced every pod", lambda: not (
            set(self.kubectl("get", "pods", "-l", "app=web", "--field-selector=status.phase=Running", "-o", "name").split())
            & before), timeout=120)

    def job(self) -> None:
        """A Job with completions=5, parallelism=2 runs real containers to completion."""
        self.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "count"},
                    "spec": {"completions": 5, "parallelism": 2, "backoffLimit": 2,
                             "template": {"spec": {"restartPolicy": "Never", "containers": [
                                 {"name": "c", "image": self.image, "command": ["sh", "-c", "echo done"]}]}}}})
        self.kubectl("wait", "--for=condition=complete", "job/count", "--timeout=180s")
        assert self.kubectl("get", "job", "count", "--no-headers").split()[2] == "5/5"
        pods = json.loads(self.kubectl("get", "pods", "-l", "job-name=count", "-o", "json"))["items"]
        assert sum(p["status"].get("phase") == "Succeeded" for p in pods) == 5, [p["status"].get("phase") for p in pods]
        first = pods[0]["metadata"]["name"]
        assert self.kubectl("logs", first).strip() == "done"

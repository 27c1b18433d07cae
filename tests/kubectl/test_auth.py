"""`kubectl auth whoami` and `kubectl auth can-i` against the real server, as the admin and as
other identities (`--as`, and bearer tokens from the cluster's token file)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.kubeconfig import write_kubeconfig
from tests.kubectl.conftest import Kubectl, parse_table
from tests.servers import Cluster


def token_kubeconfig(cluster: Cluster, path: Path, token: str) -> str:
    """A kubeconfig with a bearer token and no client certificate (a certificate would win)."""
    write_kubeconfig(path, cluster.apiserver.url, user="token-user", token=token, ca_file=str(cluster.pki.ca.cert))
    return str(path)


def test_whoami_admin_and_token_user(kubectl: Kubectl, cluster: Cluster, tmp_path: Path) -> None:
    r = kubectl("auth", "whoami")
    assert r.returncode == 0, r.stderr
    rows = {row["ATTRIBUTE"]: row["VALUE"] for row in parse_table(r.stdout)}
    assert rows["Username"] == "kubernetes-admin"
    assert "system:masters" in rows["Groups"] and "system:authenticated" in rows["Groups"]
    r = kubectl("auth", "whoami", "-o", "json", "--kubeconfig", token_kubeconfig(cluster, tmp_path / "v", "viewer-token"))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)["status"]["userInfo"]
    assert info["username"] == "viewer" and info["uid"] == "1002"
    assert set(info["groups"]) == {"viewers", "system:authenticated"}


def test_whoami_with_a_bad_token_is_unauthorized(kubectl: Kubectl, cluster: Cluster, tmp_path: Path) -> None:
    r = kubectl("auth", "whoami", "--kubeconfig", token_kubeconfig(cluster, tmp_path / "b", "no-such-token"))
    assert r.returncode != 0 and "Unauthorized" in r.stderr


def test_can_i(kubectl: Kubectl) -> None:
    def can(*args: str) -> str:
        r = kubectl("auth", "can-i", *args)
        assert r.returncode in (0, 1), r.stderr
        return r.stdout.strip()

    assert can("create", "pods") == "yes"
    assert can("*", "*") == "yes"
    assert can("list", "pods", "--as", "nobody") == "no"
    assert can("create", "selfsubjectaccessreviews.authorization.k8s.io", "--as", "nobody") == "yes"
    assert can("create", "bindings", "--as", "system:kube-scheduler") == "yes"
    assert can("delete", "deployments.apps", "--as", "system:kube-scheduler") == "no"
    assert can("list", "endpointslices.discovery.k8s.io", "--as", "system:kube-proxy") == "yes"
    assert can("get", "secrets", "--as", "system:kube-proxy") == "no"
    assert can("get", "/healthz", "--as", "nobody") == "yes"
    r = kubectl("auth", "can-i", "--list", "--as", "nobody")
    assert r.returncode == 0, r.stderr
    assert "selfsubjectaccessreviews.authorization.k8s.io" in r.stdout and "pods" not in r.stdout.split()

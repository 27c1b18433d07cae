"""Everything a secure cluster needs on disk, made once and kept: the one place that lays it out.

`kubenats up`, `kubenats init` (the Compose init service) and the test harness all call
`prepare`, so the three agree on where things live under the data folder:

    pki/                 cluster CA, serving and client certificates (shared/pki.py)
    kubeconfigs/         one kubeconfig per identity: admin, scheduler, controller-manager,
                         proxy, kubelet-<node>
    nats/passwords.json  one NATS password per component user (shared/natsconf.py)
    nats/users/<user>    the same password alone, for `--nats-password-file`
    nats.conf            nats-server configuration: users, subject permissions, optional TLS

`flags(files, component, node)` gives the command-line flags that connect a component to the
apiserver and to NATS with its own identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared import natsconf, pki

# component name -> (kubeconfig identity, NATS user)
IDENTITIES = {
    "scheduler": ("scheduler", "scheduler"),
    "controllers": ("controller-manager", "controllers"),
    "proxy": ("proxy", "proxy"),
    "events": ("admin", "admin"),
}


@dataclass
class ClusterFiles:
    data: Path
    pki: pki.ClusterPki
    nats_conf: Path
    nats_users: dict[str, Path]  # user -> password file
    nats_tls: bool
    hollow: bool

    def kubeconfig(self, identity: str) -> Path:
        return self.pki.kubeconfigs[identity]


def write_private(path: Path, text: str) -> None:
    """Write text to path (mode 0600, atomically) unless it already holds exactly that."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def prepare(data: Path, *, server_url: str, nats_port: int, nodes: list[str], hollow: bool = False,
            nats_host: str = "127.0.0.1", nats_http_port: int | None = None, nats_store_dir: str = "",
            nats_tls: bool = False, hosts: list[str] | None = None, ips: list[str] | None = None,
            service_ip: str = "10.0.0.1") -> ClusterFiles:
    """Create what is missing (certificates, kubeconfigs, NATS users), keep what exists, and
    rewrite nats.conf (nats-server reloads it on SIGHUP)."""
    data.mkdir(parents=True, exist_ok=True)
    serving_nodes = sorted({*nodes, *(["hollow"] if hollow else [])})
    cluster_pki = pki.ensure_cluster_pki(data, hosts=hosts or [], ips=ips or [], service_ip=service_ip,
                                         nodes=serving_nodes, server_url=server_url)
    names = natsconf.user_names(nodes, hollow)
    passwords = natsconf.ensure_passwords(data / "nats" / "passwords.json", names)
    users_dir = data / "nats" / "users"
    users_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(users_dir, 0o700)
    files: dict[str, Path] = {}
    for name in names:
        files[name] = users_dir / name
        write_private(files[name], passwords[name])
    conf = natsconf.render_config(port=nats_port, host=nats_host, http_port=nats_http_port, http_host="127.0.0.1",
                                  store_dir=nats_store_dir or str(data / "nats" / "jetstream"),
                                  users=natsconf.component_users(passwords, nodes, hollow),
                                  tls_cert=str(cluster_pki.nats_server.cert) if nats_tls else None,
                                  tls_key=str(cluster_pki.nats_server.key) if nats_tls else None,
                                  tls_ca=str(cluster_pki.ca.cert) if nats_tls else None)
    conf_path = data / "nats.conf"
    write_private(conf_path, conf)
    return ClusterFiles(data, cluster_pki, conf_path, files, nats_tls, hollow)


def nats_flags(files: ClusterFiles, user: str) -> list[str]:
    out = ["--nats-user", user, "--nats-password-file", str(files.nats_users[user])]
    if files.nats_tls:
        out += ["--nats-ca-file", str(files.pki.ca.cert)]
    return out


def flags(files: ClusterFiles, component: str, node: str = "") -> list[str]:
    """`--kubeconfig` and NATS credentials of a component; a kubelet (one node, or the hollow
    fleet when node is empty) also gets its serving certificate and the client CA."""
    if component == "apiserver":
        return nats_flags(files, "apiserver")
    if component == "kubelet":
        identity, user = (f"kubelet-{node}", natsconf.kubelet_user(node)) if node else ("admin", "kubelet-hollow")
        serving = files.pki.kubelet_serving[node or "hollow"]
        return ["--kubeconfig", str(files.kubeconfig(identity)), *nats_flags(files, user),
                "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
                "--client-ca-file", str(files.pki.ca.cert)]
    if component not in IDENTITIES:
        raise ValueError(f"no identity for component {component!r}")
    identity, user = IDENTITIES[component]
    return ["--kubeconfig", str(files.kubeconfig(identity)), *nats_flags(files, user)]

"""`kubenats init`: the credentials and configuration a Compose cluster needs, before anything starts.

Compose runs this once per `up` as a one-shot service on the shared volume; every other service
mounts that volume at the same path, so the paths inside the generated files are valid in every
container. It makes (or keeps) the cluster CA, certificates, kubeconfigs, NATS users and
nats.conf (with TLS) through `cluster.prepare`, and copies the local node's files to fixed names
(`kubeconfigs/kubelet.yaml`, `pki/kubelet-serving.{crt,key}`, `nats/users/kubelet`) because a
Compose file cannot spell the host name in a path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path

from shared.netinfo import host_addresses

from . import cluster


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="/var/lib/kubenats")
    p.add_argument("--node-name", default=socket.gethostname().lower())
    p.add_argument("--api-url", default="https://127.0.0.1:6443", help="the server written into kubeconfigs")
    p.add_argument("--nats-port", type=int, default=4222)
    p.add_argument("--nats-http-port", type=int, default=8222)
    p.add_argument("--nats-store-dir", default="/data", help="JetStream folder inside the NATS container")
    p.add_argument("--nats-tls", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tls-sans", default="", help="extra names/IPs for the server certificates (comma-separated)")


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600 if dst.suffix in (".key", ".yaml", "") else 0o644)
    tmp.replace(dst)


def run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir)
    names: list[str] = []
    ips: list[str] = []
    for item in (v.strip() for v in args.tls_sans.split(",")):
        if item:
            (ips if item.replace(".", "").isdigit() or ":" in item else names).append(item)
    host_names, host_ips = host_addresses()  # the kubelet's serving certificate names the node's InternalIP
    names += host_names
    ips += host_ips
    node = args.node_name
    try:
        files = cluster.prepare(data, server_url=args.api_url, nats_port=args.nats_port, nodes=[node],
                                nats_host="0.0.0.0", nats_http_port=args.nats_http_port,
                                nats_store_dir=args.nats_store_dir, nats_tls=args.nats_tls,
                                hosts=names, ips=sorted(set(ips)))
        _copy(files.kubeconfig(f"kubelet-{node}"), data / "kubeconfigs" / "kubelet.yaml")
        serving = files.pki.kubelet_serving[node]
        _copy(serving.cert, data / "pki" / "kubelet-serving.crt")
        _copy(serving.key, data / "pki" / "kubelet-serving.key")
        _copy(files.nats_users[f"kubelet-{node}"], data / "nats" / "users" / "kubelet")
    except (OSError, ValueError, KeyError) as e:
        print(f"kubenats init: {e}", file=sys.stderr)
        return 1
    print(f"kubenats init: credentials for node {node} in {data}", flush=True)
    return 0

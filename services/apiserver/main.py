"""`kubenats apiserver`: command-line flags to a running uvicorn server."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from shared.kubeconfig import write_kubeconfig
from shared.log import setup

from .app import Config, create_app


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--secure-port", "--port", dest="port", type=int, default=6443)
    p.add_argument("--service-cluster-ip-range", default="10.0.0.0/16",
                   help="CIDR from which Service cluster IPs are allocated (the first IP goes to the `kubernetes` Service)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range (FROM-TO) from which NodePort Services get their node ports")
    p.add_argument("--no-publish", action="store_true", help="do not run the etcd->NATS publisher in this replica")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--write-kubeconfig", default="",
                   help="write an admin kubeconfig for this server to this path at startup (Compose uses it)")


def run(args: argparse.Namespace) -> int:
    setup("apiserver", args.log_level)
    cfg = Config(
        etcd_servers=[s for s in args.etcd_servers.split(",") if s],
        nats_url=args.nats_url,
        bind_address=args.bind_address,
        port=args.port,
        publish=not args.no_publish,
        service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range,
    )
    if args.write_kubeconfig:
        host = "127.0.0.1" if cfg.bind_address in ("0.0.0.0", "::", "") else cfg.bind_address
        write_kubeconfig(Path(args.write_kubeconfig), f"http://{host}:{cfg.port}")
    uvicorn.run(create_app(cfg), host=cfg.bind_address, port=cfg.port, log_config=None, access_log=False,
                lifespan="on", timeout_graceful_shutdown=5)
    return 0

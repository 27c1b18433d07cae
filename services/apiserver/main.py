"""`kubenats apiserver`: command-line flags to a running HTTPS server.

There is no insecure port. Unless certificate flags are given, the cluster CA, the serving
certificate and the component credentials are created in `--data-dir` on first start and kept
across restarts (`shared/pki.py`); `--write-kubeconfig` writes an admin kubeconfig with the
credentials inlined, so it works wherever the file is copied (Compose mounts it to the host).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import ssl
import sys
from pathlib import Path

import yaml

from shared import pki
from shared.bus import options_from_args
from shared.kubeconfig import server_from_kubeconfig
from shared.log import setup
from shared.netinfo import host_addresses

from . import publishproc, workers
from .allocator import IPRange
from .config import Config

DEFAULT_DATA_DIR = "/var/lib/kubenats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    p.add_argument("--etcd-cafile", default="", help="CA bundle that signed etcd's serving certificate")
    p.add_argument("--etcd-certfile", default="", help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", default="", help="client key for etcd")
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    p.add_argument("--nats-user", default="", help="NATS user name (the generated configuration has `apiserver`)")
    p.add_argument("--nats-password-file", default="", help="file holding the NATS password")
    p.add_argument("--nats-ca-file", default="", help="CA that signed the NATS server certificate (TLS)")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--secure-port", "--port", dest="port", type=int, default=6443)
    p.add_argument("--data-dir", default=os.environ.get("KUBENATS_DATA_DIR", DEFAULT_DATA_DIR),
                   help="where the cluster CA, certificates and keys live (created on first start)")
    p.add_argument("--tls-cert-file", default="", help="serving certificate (default: <data-dir>/pki/apiserver.crt)")
    p.add_argument("--tls-private-key-file", default="", help="serving key (default: <data-dir>/pki/apiserver.key)")
    p.add_argument("--client-ca-file", default="", help="CA for client certificates (default: <data-dir>/pki/ca.crt)")
    p.add_argument("--tls-sans", default="", help="extra names and IPs for the serving certificate (comma-separated)")
    p.add_argument("--token-auth-file", default="", help="static bearer tokens, Kubernetes' CSV format")
    p.add_argument("--kubelet-client-certificate", default="", help="client certificate for kubelets' HTTPS port")
    p.add_argument("--kubelet-client-key", default="")
    p.add_argument("--kubelet-certificate-authority", default="", help="CA of the kubelets' serving certificates")
    p.add_argument("--encrypt-secrets", action=argparse.BooleanOptionalAction, default=True,
                   help="encrypt Secrets at rest with the AES-GCM key in <data-dir>/pki/encryption.key")
    p.add_argument("--max-requests-inflight", type=int, default=400)
    p.add_argument("--max-mutating-requests-inflight", type=int, default=200)
    p.add_argument("--service-cluster-ip-range", default="10.0.0.0/16",
                   help="CIDR from which Service cluster IPs are allocated (the first IP goes to the `kubernetes` Service)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range (FROM-TO) from which NodePort Services get their node ports")
    p.add_argument("--no-publish", action="store_true", help="do not run the etcd->NATS publisher in this replica")
    p.add_argument("--workers", type=int, default=1,
                   help="apiserver processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)  # set by the supervisor
    p.add_argument("--role", choices=["", "publisher"], default="", help=argparse.SUPPRESS)  # publishproc.start
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--publisher-process", action=argparse.BooleanOptionalAction, default=True,
                   help="run the etcd->NATS publisher in a process of its own (default), not in the HTTP process")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--write-kubeconfig", default="",
                   help="write an admin kubeconfig (credentials inlined) for this server to this path at startup")


def _split_sans(value: str) -> tuple[list[str], list[str]]:
    names: list[str] = []
    ips: list[str] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in item else socket.AF_INET, item)
            ips.append(item)
        except OSError:
            names.append(item)
    return names, ips


def write_inline_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str = "admin") -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubenats", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "contexts": [{"name": "kubenats", "context": {"cluster": "kubenats", "user": user}}],
        "current-context": "kubenats",
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _kubelet_ssl(ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def run(args: argparse.Namespace) -> int:
    setup("apiserver", args.log_level)
    host = "127.0.0.1" if args.bind_address in ("0.0.0.0", "::", "") else args.bind_address
    server_url = f"https://{host}:{args.port}"
    data_dir = Path(args.data_dir).expanduser()
    names, ips = host_addresses()
    extra_names, extra_ips = _split_sans(args.tls_sans)
    if host not in ("127.0.0.1", "localhost"):
        ips.append(host)
    try:
        service_ip = IPRange(args.service_cluster_ip_range).first  # the `kubernetes` Service IP is a SAN
    except ValueError as e:
        print(f"kubenats apiserver: --service-cluster-ip-range: {e}", file=sys.stderr)
        return 1
    admin_kubeconfig = data_dir / "kubeconfigs" / "admin.yaml"
    try:
        # kubeconfigs already laid out (by `kubenats up`, `kubenats init`, another replica) keep
        # their server: this replica only makes sure its certificates exist
        kubeconfig_server = server_from_kubeconfig(str(admin_kubeconfig)) if admin_kubeconfig.exists() else server_url
        cluster = pki.ensure_cluster_pki(data_dir, hosts=[*names, *extra_names], ips=[*ips, *extra_ips],
                                         service_ip=service_ip, server_url=kubeconfig_server)
    except (OSError, ValueError) as e:
        print(f"kubenats apiserver: cannot prepare certificates in {data_dir}: {e}", file=sys.stderr)
        return 1
    cert = args.tls_cert_file or str(cluster.apiserver.cert)
    key = args.tls_private_key_file or str(cluster.apiserver.key)
    client_ca = args.client_ca_file or str(cluster.ca.cert)
    kubelet_ssl = _kubelet_ssl(args.kubelet_certificate_authority or str(cluster.ca.cert),
                               args.kubelet_client_certificate or str(cluster.kubelet_client.cert),
                               args.kubelet_client_key or str(cluster.kubelet_client.key))
    separate = args.publisher_process and not args.no_publish and args.worker < 0 and not args.role
    if args.workers > 1 and args.worker < 0:  # certificates exist now: start the workers
        return workers.supervise(args.workers, sys.argv[1:], publisher=separate)
    try:
        bus_options = options_from_args(args.nats_user, args.nats_password_file, args.nats_ca_file)
    except ValueError as e:
        print(f"kubenats apiserver: {e}", file=sys.stderr)
        return 1
    cfg = Config(
        etcd_servers=[s for s in args.etcd_servers.split(",") if s],
        etcd_ca=args.etcd_cafile or None,
        etcd_cert=(args.etcd_certfile, args.etcd_keyfile) if args.etcd_certfile else None,
        nats_url=args.nats_url,
        bus_options=bus_options,
        bind_address=args.bind_address,
        port=args.port,
        publish=not args.no_publish and args.worker <= 0 and not separate,
        build_indexes=args.worker <= 0 and not separate,
        service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range,
        token_auth_file=args.token_auth_file,
        max_requests_inflight=args.max_requests_inflight,
        max_mutating_requests_inflight=args.max_mutating_requests_inflight,
        kubelet_ssl=kubelet_ssl,
        secret_box=pki.SecretBox.load_or_create(data_dir / "pki" / "encryption.key") if args.encrypt_secrets else None,
    )
    if args.write_kubeconfig and args.worker <= 0 and not args.role:
        admin = cluster.clients["admin"]
        write_inline_kubeconfig(Path(args.write_kubeconfig), server_url, cluster.ca.cert, admin.cert, admin.key)
    if args.role == "publisher":
        return publishproc.run(cfg, args.ready_fd, args.log_level)
    import uvicorn  # the HTTP side only: the publisher process does without the web stack

    from shared.tlsserver import server_context, uvicorn_options

    from .app import create_app
    try:
        app = create_app(cfg)
    except ValueError as e:  # e.g. an unreadable token file
        print(f"kubenats apiserver: {e}", file=sys.stderr)
        return 1
    ctx = server_context(cert, key, client_ca)
    config = uvicorn.Config(app, host=cfg.bind_address, port=cfg.port, log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5, **uvicorn_options(ctx))
    if args.worker >= 0:
        workers.serve(config, cfg.bind_address, cfg.port)
        return 0
    child = None
    if separate:
        try:
            child = publishproc.start(sys.argv[1:])
        except (OSError, RuntimeError) as e:
            print(f"kubenats apiserver: {e}", file=sys.stderr)
            return 1
        expected = workers.exit_with(child)
    try:
        uvicorn.Server(config).run()
    finally:
        if child is not None:
            expected.set()
            publishproc.stop(child)
    return 0

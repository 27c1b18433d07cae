"""How a component reaches the apiserver and NATS, with its own identity: one set of flags for all.

Every component (scheduler, controllers, proxy, kubelet, the events CLI) takes the same flags:

  --kubeconfig           apiserver URL and credentials (client certificate, token, CA); default $KUBECONFIG
  --master               overrides the kubeconfig's server only
  --nats-url             default nats://127.0.0.1:4222
  --nats-user            this component's NATS user (shared/natsconf.py names them)
  --nats-password-file   the file holding that user's password
  --nats-ca-file         CA that verifies the NATS server's certificate (TLS)

`api_client(args, user_agent)` and `bus_options(args)` turn them into an `ApiClient` and the
`BusOptions` for `Bus(args.nats_url, name, ...)`. Whatever is wrong with them (an unreadable
kubeconfig, a missing certificate or password file) raises `ConnectError` with a one-line
message; a component's `run` prints it with `fail(component, error)` and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from typing import Any

from shared.bus import BusOptions, options_from_args
from shared.client import ApiClient
from shared.kubeconfig import ClientConfig, ConfigError, load_client_config

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
EXIT_USAGE = 2


class ConnectError(ValueError):
    """Connection settings that cannot be used; the message is one line for the user."""


def add_arguments(p: argparse.ArgumentParser, *, nats_user_default: str, api: bool = True,
                  nats_url_default: str = DEFAULT_NATS_URL) -> None:
    """The connection flags. `api=False` leaves out --kubeconfig and --master (a NATS-only tool);
    an empty `nats_user_default` / `nats_url_default` means the component decides at startup."""
    if api:
        p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ""),
                       help="kubeconfig with the apiserver's address and this component's credentials "
                            "(default: $KUBECONFIG)")
        p.add_argument("--master", default="", help="the apiserver URL (overrides the kubeconfig's server)")
    p.add_argument("--nats-url", default=nats_url_default,
                   help=f"NATS server URL (default: {nats_url_default or 'decided at startup'})")
    p.add_argument("--nats-user", default=nats_user_default,
                   help=f"NATS user (default: {nats_user_default or 'decided at startup'})")
    p.add_argument("--nats-password-file", default="", help="file holding the NATS user's password")
    p.add_argument("--nats-ca-file", default="", help="CA file that verifies the NATS server's certificate")


def _readable(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise ConnectError(f"{what} {path} does not exist")
    if not os.access(path, os.R_OK):
        raise ConnectError(f"{what} {path} is not readable")


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The apiserver URL and credentials from --kubeconfig and --master; the files it names are
    checked to be readable."""
    try:
        cfg = load_client_config(getattr(args, "kubeconfig", "") or "", getattr(args, "master", "") or "")
    except ConfigError as e:
        raise ConnectError(str(e)) from None
    if cfg.ca_file:
        _readable(cfg.ca_file, "certificate authority file")
    if cfg.cert:
        _readable(cfg.cert[0], "client certificate file")
        _readable(cfg.cert[1], "client key file")
    return cfg


def client_kwargs(cfg: ClientConfig) -> dict[str, Any]:
    """`ApiClient` keyword arguments (token, ca_file, cert) of a ClientConfig."""
    return {"token": cfg.token, "ca_file": cfg.ca_file, "cert": cfg.cert}


def api_client(args: argparse.Namespace, user_agent: str, *, timeout: float = 30.0) -> ApiClient:
    """An ApiClient for the apiserver of --kubeconfig / --master, as this component's identity."""
    cfg = client_config(args)
    try:
        return ApiClient(cfg.server, user_agent=user_agent, timeout=timeout, **client_kwargs(cfg))
    except (OSError, ssl.SSLError) as e:  # a certificate or key that does not load
        raise ConnectError(f"cannot use the TLS files of the kubeconfig {getattr(args, 'kubeconfig', '')!r} "
                           f"(ca={cfg.ca_file}, cert={cfg.cert[0] if cfg.cert else None}): {e}") from None


def bus_options(args: argparse.Namespace) -> BusOptions:
    """BusOptions from --nats-user, --nats-password-file and --nats-ca-file."""
    try:
        return options_from_args(args.nats_user or "", args.nats_password_file or "", args.nats_ca_file or "")
    except ValueError as e:
        raise ConnectError(str(e)) from None


def fail(component: str, error: BaseException) -> int:
    """Print `kubenats <component>: <error>` on stderr (one line); the exit code to return."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"kubenats {component}: {text}", file=sys.stderr)
    return EXIT_USAGE

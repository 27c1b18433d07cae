"""NATS users and subject permissions per component, and the nats-server.conf that enforces them.

Only the apiserver may publish under `kube.>` (it is the one writer of committed changes); every
other component reads. Each component connects as its own user:

| user             | publish                                   | subscribe                                              |
|------------------|-------------------------------------------|--------------------------------------------------------|
| apiserver        | kube.>, the JetStream API of stream KUBE  | kube.events.>, kube.control.resync, _INBOX.> (acks)    |
| scheduler        | nothing                                   | pods, nodes, namespaces events, kube.control.resync    |
| controllers      | nothing                                   | kube.events.>, kube.control.resync                     |
| proxy            | nothing                                   | services, endpoints, endpointslices, resync            |
| kubelet-<node>   | nothing                                   | kube.nodes.<node>.>, its Node's subject, resync        |
| kubelet-hollow   | nothing                                   | kube.nodes.>, kube.events.core.nodes._.*, resync       |
| admin            | read-only JetStream API, $JS.FC, _INBOX.> | > (the `kubenats events` CLI, `nats sub`, humans)      |

The subscribe lists are exactly what the components subscribe to (`shared.informer.Informer`
subjects, `services/apiserver/watch.py`); nobody uses core request/reply, so only the apiserver
(JetStream API replies and publish acks) and admin (JetStream replay) get inboxes.
A component that asks for more than its list gets a permissions violation from the server,
which `shared.bus` logs as one `nats_permission_violation` line.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.bus import RESYNC_SUBJECT, STREAM, event_subject, token

INBOX = "_INBOX.>"
JS_API = "$JS.API"


@dataclass(frozen=True)
class NatsUser:
    name: str
    password: str
    publish: tuple[str, ...]  # allowed publish subjects (empty: may publish nothing)
    subscribe: tuple[str, ...]  # allowed subscribe subjects (empty: may subscribe to nothing)


def _events(group: str, plural: str) -> str:
    return f"kube.events.{token(group or 'core')}.{plural}.>"


# What each reading component's informers subscribe to (services/*/: one Informer per resource).
SCHEDULER_SUBJECTS = (_events("", "pods"), _events("", "nodes"), _events("", "namespaces"), RESYNC_SUBJECT)
CONTROLLERS_SUBJECTS = ("kube.events.>", RESYNC_SUBJECT)  # the garbage collector watches every kind
PROXY_SUBJECTS = (_events("", "services"), _events("", "endpoints"),
                  _events("discovery.k8s.io", "endpointslices"), RESYNC_SUBJECT)

# The apiserver: publishes every change (core publish with a JetStream ack inbox) and manages its
# stream (Bus.ensure_stream, Bus.last_published); the watch hub subscribes to events and resyncs.
APISERVER_PUBLISH = (
    "kube.>",
    f"{JS_API}.INFO",
    f"{JS_API}.STREAM.CREATE.{STREAM}",
    f"{JS_API}.STREAM.UPDATE.{STREAM}",
    f"{JS_API}.STREAM.INFO.{STREAM}",
    f"{JS_API}.STREAM.MSG.GET.{STREAM}",
    f"{JS_API}.DIRECT.GET.{STREAM}",
)
APISERVER_SUBSCRIBE = ("kube.events.>", RESYNC_SUBJECT, INBOX)

# admin: read-only JetStream (find the stream, ephemeral/ordered consumers, message get, flow
# control replies) and inboxes; no stream create/update/delete/purge, never kube.>.
ADMIN_PUBLISH = (
    f"{JS_API}.INFO",
    f"{JS_API}.STREAM.NAMES",
    f"{JS_API}.STREAM.LIST",
    f"{JS_API}.STREAM.INFO.*",
    f"{JS_API}.STREAM.MSG.GET.*",
    f"{JS_API}.DIRECT.GET.*",
    f"{JS_API}.DIRECT.GET.*.>",
    f"{JS_API}.CONSUMER.CREATE.*",
    f"{JS_API}.CONSUMER.CREATE.*.>",
    f"{JS_API}.CONSUMER.INFO.*.*",
    f"{JS_API}.CONSUMER.NAMES.*",
    f"{JS_API}.CONSUMER.LIST.*",
    f"{JS_API}.CONSUMER.DELETE.*.*",
    f"{JS_API}.CONSUMER.MSG.NEXT.*.*",
    "$JS.FC.>",
    "$JS.ACK.>",
    INBOX,
)
ADMIN_SUBSCRIBE = (">",)


def kubelet_subjects(node: str) -> tuple[str, ...]:
    """A kubelet's own pods, its own Node object, and resync."""
    return (f"kube.nodes.{token(node)}.>", event_subject("", "nodes", "", node), RESYNC_SUBJECT)


HOLLOW_SUBJECTS = ("kube.nodes.>", "kube.events.core.nodes._.*", RESYNC_SUBJECT)


def kubelet_user(node: str) -> str:
    return f"kubelet-{node}"


def user_names(nodes: Sequence[str] = (), hollow: bool = False) -> list[str]:
    """Every user name `component_users` needs a password for (for `ensure_passwords`)."""
    names = ["apiserver", "scheduler", "controllers", "proxy", *(kubelet_user(n) for n in nodes)]
    if hollow:
        names.append("kubelet-hollow")
    names.append("admin")
    return names


def component_users(passwords: Mapping[str, str], nodes: Sequence[str] = (), hollow: bool = False) -> list[NatsUser]:
    """The users of one cluster: the components, one kubelet per node (plus the hollow fleet's
    shared user when `hollow`), and admin. `passwords` maps each user name to its password."""

    def pw(name: str) -> str:
        try:
            value = passwords[name]
        except KeyError:
            raise KeyError(f"no NATS password for user {name!r} (have: {', '.join(sorted(passwords)) or 'none'}); "
                           f"create it first, e.g. with shared.natsconf.ensure_passwords") from None
        if not value:
            raise ValueError(f"empty NATS password for user {name!r}")
        return value

    users = [
        NatsUser("apiserver", pw("apiserver"), APISERVER_PUBLISH, APISERVER_SUBSCRIBE),
        NatsUser("scheduler", pw("scheduler"), (), SCHEDULER_SUBJECTS),
        NatsUser("controllers", pw("controllers"), (), CONTROLLERS_SUBJECTS),
        NatsUser("proxy", pw("proxy"), (), PROXY_SUBJECTS),
    ]
    seen: set[str] = set()
    for node in nodes:
        if node in seen:
            continue
        seen.add(node)
        name = kubelet_user(node)
        users.append(NatsUser(name, pw(name), (), kubelet_subjects(node)))
    if hollow:
        users.append(NatsUser("kubelet-hollow", pw("kubelet-hollow"), (), HOLLOW_SUBJECTS))
    users.append(NatsUser("admin", pw("admin"), ADMIN_PUBLISH, ADMIN_SUBSCRIBE))
    return users


def quote(value: str) -> str:
    """A double-quoted nats-server.conf string (no `$VAR` expansion, backslash escapes)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"control character in NATS configuration value {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _permission(allow: Sequence[str]) -> str:
    # an empty allow list is not "nothing" in every server version: deny everything explicitly
    return f"{{ allow: {_list(allow)} }}" if allow else f"{{ deny: {_list(['>'])} }}"


def render_config(*, port: int, users: Sequence[NatsUser], store_dir: str, http_port: int | None = None,
                  host: str = "0.0.0.0", max_payload: int = 8 * 1024 * 1024,
                  tls_cert: str | None = None, tls_key: str | None = None, tls_ca: str | None = None,
                  http_host: str | None = None) -> str:
    """A nats-server.conf: listener, JetStream on file storage, max payload, optional monitoring
    (`http_host` defaults to `host`), one user per component with its permissions, and TLS when
    `tls_cert` is given (clients verify the server with the CA that signed it)."""
    if not users:
        raise ValueError("at least one user is needed: a server without users accepts anyone")
    names = [u.name for u in users]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate NATS users: {', '.join(dupes)}")
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together")
    lines = [
        "# kubenats: generated by shared/natsconf.py; one user per component, only the apiserver publishes kube.>",
        f"listen: {quote(f'{host}:{port}')}",
        f"max_payload: {int(max_payload)}",
    ]
    if http_port is not None:
        lines.append(f"http: {quote(f'{http_host or host}:{http_port}')}")
    lines += ["jetstream {", f"  store_dir: {quote(store_dir)}", "}"]
    if tls_cert:
        assert tls_key is not None
        lines += ["tls {", f"  cert_file: {quote(tls_cert)}", f"  key_file: {quote(tls_key)}"]
        if tls_ca:
            lines.append(f"  ca_file: {quote(tls_ca)}")
        lines += ["  timeout: 2", "}"]
    lines += ["authorization {", "  users = ["]
    for u in users:
        lines += [
            "    {",
            f"      user: {quote(u.name)}",
            f"      password: {quote(u.password)}",
            "      permissions: {",
            f"        publish: {_permission(u.publish)}",
            f"        subscribe: {_permission(u.subscribe)}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def ensure_passwords(path: Path, names: Iterable[str]) -> dict[str, str]:
    """The JSON file `{user: password}` at `path` (mode 0600), created or extended with a random
    url-safe password for each missing name; existing passwords are kept. Returns every entry."""
    path = Path(path)
    current: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text() or "{}")
        except ValueError as e:
            raise ValueError(f"{path}: not a JSON object of NATS passwords: {e}") from None
        if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
            raise ValueError(f"{path}: not a JSON object of NATS passwords")
        current = loaded
    missing = [n for n in dict.fromkeys(names) if not current.get(n)]
    if missing or not path.exists():
        for name in missing:
            current[name] = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(current, indent=2, sort_keys=True) + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return dict(current)

"""`shared.connect`: the connection flags every component shares, turned into an `ApiClient` and
`BusOptions`; unusable settings end a component with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared import connect, pki
from shared.bus import BusOptions
from shared.client import ApiClient
from shared.kubeconfig import DEFAULT_MASTER, write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str, user: str = "scheduler", **kwargs: Any) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    connect.add_arguments(p, nats_user_default=user, **kwargs)
    return p.parse_args(list(argv))


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate, a kubeconfig using both, a NATS password file."""
    ca = pki.ensure_ca(tmp_path / "pki")
    client = pki.ensure_cert(tmp_path / "pki", ca, "scheduler", cn="system:kube-scheduler", client=True)
    kubeconfig = tmp_path / "scheduler.yaml"
    write_kubeconfig(kubeconfig, "https://api.example:6443", "scheduler", ca_file=ca.cert,
                     cert_file=client.cert, key_file=client.key)
    password = tmp_path / "nats-password"
    password.write_text("s3cret\n")
    return {"ca": ca.cert, "cert": client.cert, "key": client.key, "kubeconfig": kubeconfig, "password": password}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/from/env")
    args = parse()
    assert (args.kubeconfig, args.master, args.nats_url) == ("/from/env", "", "nats://127.0.0.1:4222")
    assert (args.nats_user, args.nats_password_file, args.nats_ca_file) == ("scheduler", "", "")
    monkeypatch.delenv("KUBECONFIG")
    assert parse(user="proxy").kubeconfig == "" and parse(user="proxy").nats_user == "proxy"


def test_nats_only_flags() -> None:
    args = parse("--nats-user", "bob", user="admin", api=False, nats_url_default="")
    assert not hasattr(args, "kubeconfig") and not hasattr(args, "master")
    assert (args.nats_url, args.nats_user) == ("", "bob")
    with pytest.raises(SystemExit):
        parse("--master", "https://x", api=False)


class Recorder:
    """Stands in for ApiClient and keeps what it was built with."""

    def __init__(self, server: str, **kwargs: Any) -> None:
        self.server = server
        self.kwargs = kwargs


def test_api_client_from_kubeconfig(creds: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect, "ApiClient", Recorder)
    c: Any = connect.api_client(parse("--kubeconfig", str(creds["kubeconfig"])), "kubenats-scheduler")
    assert c.server == "https://api.example:6443"
    assert c.kwargs == {"user_agent": "kubenats-scheduler", "timeout": 30.0, "token": None,
                        "ca_file": str(creds["ca"].resolve()),
                        "cert": (str(creds["cert"].resolve()), str(creds["key"].resolve()))}
    # --master replaces the server only: the identity stays
    c = connect.api_client(parse("--kubeconfig", str(creds["kubeconfig"]), "--master", "https://other:7443"), "x")
    assert c.server == "https://other:7443" and c.kwargs["cert"] is not None
    # neither: the default server, no credentials
    c = connect.api_client(parse(), "x")
    assert (c.server, c.kwargs["token"], c.kwargs["cert"]) == (DEFAULT_MASTER, None, None)


def test_api_client_token_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect, "ApiClient", Recorder)
    path = tmp_path / "kc"
    write_kubeconfig(path, "https://h:6443", "bot", "tok-1")
    c: Any = connect.api_client(parse("--kubeconfig", str(path)), "x")
    assert (c.server, c.kwargs["token"], c.kwargs["ca_file"], c.kwargs["cert"]) == ("https://h:6443", "tok-1", None, None)


def test_real_api_client(creds: dict[str, Path]) -> None:
    client = connect.api_client(parse("--kubeconfig", str(creds["kubeconfig"])), "kubenats-scheduler")
    assert isinstance(client, ApiClient)
    asyncio.run(client.close())


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "cannot read kubeconfig"),
    ("no-context", "has no current-context"),
    ("missing-cert", "client certificate file"),
    ("missing-ca", "certificate authority file"),
    ("bad-cert", "cannot use the TLS files"),
])
def test_api_client_errors(tmp_path: Path, creds: dict[str, Path], setup: str, message: str) -> None:
    path = tmp_path / "kc.yaml"
    if setup == "no-context":
        path.write_text("apiVersion: v1\nkind: Config\n")
    elif setup == "missing-cert":
        write_kubeconfig(path, "https://h:1", "u", ca_file=creds["ca"], cert_file=tmp_path / "nope.crt",
                         key_file=creds["key"])
    elif setup == "missing-ca":
        write_kubeconfig(path, "https://h:1", "u", ca_file=tmp_path / "nope-ca.crt")
    elif setup == "bad-cert":
        garbage = tmp_path / "garbage.crt"
        garbage.write_text("not a certificate\n")
        write_kubeconfig(path, "https://h:1", "u", ca_file=creds["ca"], cert_file=garbage, key_file=creds["key"])
    with pytest.raises(connect.ConnectError, match=message) as info:
        connect.api_client(parse("--kubeconfig", str(path)), "x")
    assert "\n" not in str(info.value)


def test_bus_options(creds: dict[str, Path]) -> None:
    assert connect.bus_options(parse()) == BusOptions(user="scheduler")
    opts = connect.bus_options(parse("--nats-password-file", str(creds["password"]), "--nats-ca-file", str(creds["ca"])))
    assert (opts.user, opts.password, opts.tls_ca) == ("scheduler", "s3cret", str(creds["ca"]))
    opts = connect.bus_options(parse("--nats-user", "kubelet-n1", "--nats-password-file", str(creds["password"])))
    assert (opts.user, opts.password, opts.tls_ca) == ("kubelet-n1", "s3cret", None)


@pytest.mark.parametrize(("argv", "message"), [
    (["--nats-password-file", "/nonexistent/pw"], "cannot read the NATS password file /nonexistent/pw"),
    (["--nats-ca-file", "/nonexistent/ca.crt"], "the NATS CA file /nonexistent/ca.crt does not exist"),
    (["--nats-user", "", "--nats-password-file", "PW"], "--nats-password-file needs --nats-user"),
])
def test_bus_options_errors(creds: dict[str, Path], argv: list[str], message: str) -> None:
    argv = [str(creds["password"]) if a == "PW" else a for a in argv]
    with pytest.raises(connect.ConnectError, match=message):
        connect.bus_options(parse(*argv))


def test_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert connect.fail("proxy", connect.ConnectError("cannot read kubeconfig x:\n  no such file")) == 2
    assert capsys.readouterr().err == "kubenats proxy: cannot read kubeconfig x: no such file\n"


@pytest.mark.parametrize("argv", [
    ["scheduler", "--kubeconfig", "/nonexistent/kubeconfig"],
    ["controllers", "--kubeconfig", "/nonexistent/kubeconfig"],
    ["proxy", "--kubeconfig", "/nonexistent/kubeconfig"],
    ["kubelet", "--kubeconfig", "/nonexistent/kubeconfig", "--runtime", "hollow", "--root-dir", "{tmp}"],
    ["scheduler", "--nats-password-file", "/nonexistent/pw"],
    ["controllers", "--nats-password-file", "/nonexistent/pw"],
    ["proxy", "--nats-password-file", "/nonexistent/pw"],
    ["kubelet", "--nats-password-file", "/nonexistent/pw", "--runtime", "hollow", "--root-dir", "{tmp}"],
    ["events", "--nats-password-file", "/nonexistent/pw"],
    ["events", "--kubeconfig", "/nonexistent/kubeconfig"],
])
def test_components_exit_2_with_one_line(argv: list[str], tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "services.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kubenats {argv[0]}: "), r.stderr
    assert "/nonexistent/" in lines[0] and "Traceback" not in r.stderr


def test_events_reads_partial_objects_through_the_api() -> None:
    """`kubenats events` uses its API client for events that arrived `partial` (metadata only)."""
    from services.events.main import complete
    from shared.api.resources import Resource
    from shared.errors import ApiError

    class Client:
        calls: list[tuple[str, str, str]] = []

        async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
            self.calls.append((res.plural, namespace, name))
            if name == "gone":
                raise ApiError(404, "NotFound", "gone")
            return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}}

    c: Any = Client()
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "ns"}}
    partial = {"type": "MODIFIED", "object": meta, "partial": True}
    assert asyncio.run(complete(c, partial))["object"]["data"] == {"k": "v"}
    assert asyncio.run(complete(c, {**partial, "type": "DELETED"})) == {**partial, "type": "DELETED"}
    gone = {**partial, "object": {**meta, "metadata": {"name": "gone", "namespace": "ns"}}}
    assert asyncio.run(complete(c, gone)) == gone
    whole = {"type": "ADDED", "object": meta}
    assert asyncio.run(complete(c, whole)) is whole
    assert c.calls == [("configmaps", "ns", "big"), ("configmaps", "ns", "gone")]

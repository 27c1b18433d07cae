"""Kubeconfig files: what `write_kubeconfig` writes reads back through `load_client_config`, and the
forms other tools write (inline data, relative paths, token files) resolve the way kubectl does."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.kubeconfig import (
    DEFAULT_MASTER,
    ClientConfig,
    ConfigError,
    kubeconfig_dict,
    load_client_config,
    server_from_kubeconfig,
    write_kubeconfig,
)


def doc(cluster: dict[str, Any], user: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user or {}}],
    }


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_token_kubeconfig_as_before(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "admin.yaml"
    assert write_kubeconfig(path, "http://127.0.0.1:6443", "admin", "tok") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server_from_kubeconfig(str(path)) == "http://127.0.0.1:6443"
    assert load_client_config(str(path)) == ClientConfig(server="http://127.0.0.1:6443", token="tok")
    assert kubeconfig_dict("http://x:1")["users"] == [{"name": "admin", "user": {}}]
    assert kubeconfig_dict("http://x:1")["clusters"] == [{"name": "kubenats", "cluster": {"server": "http://x:1"}}]


def test_certificate_kubeconfig_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "kc" / "scheduler.yaml"
    ca, crt, key = tmp_path / "ca.crt", tmp_path / "s.crt", tmp_path / "s.key"
    assert write_kubeconfig(path, "https://h:6443", "scheduler", ca_file=ca, cert_file=crt, key_file=key)
    data = yaml.safe_load(path.read_text())
    assert data["clusters"][0]["cluster"] == {"server": "https://h:6443", "certificate-authority": str(ca)}
    assert data["users"][0] == {"name": "scheduler",
                                "user": {"client-certificate": str(crt), "client-key": str(key)}}
    assert load_client_config(str(path)) == ClientConfig(server="https://h:6443", token=None,
                                                         ca_file=str(ca), cert=(str(crt), str(key)))
    # the same content again leaves the file alone
    mtime = path.stat().st_mtime_ns
    assert write_kubeconfig(path, "https://h:6443", "scheduler", ca_file=ca, cert_file=crt, key_file=key) is False
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == ["scheduler.yaml"]


def test_inline_data_goes_to_private_files(tmp_path: Path) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    path = write(tmp_path, doc({"server": "https://h:1", "certificate-authority-data": b64(b"CA")},
                               {"client-certificate-data": b64(b"CERT"), "client-key-data": b64(b"KEY")}))
    cfg = load_client_config(str(path))
    assert cfg.ca_file and cfg.cert
    files = [Path(cfg.ca_file), *map(Path, cfg.cert)]
    assert [f.read_bytes() for f in files] == [b"CA", b"CERT", b"KEY"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_relative_paths_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = write(tmp_path, doc({"server": "https://h:1", "certificate-authority": "pki/ca.crt"},
                               {"client-certificate": "pki/u.crt", "client-key": "/abs/u.key",
                                "tokenFile": "token"}))
    cfg = load_client_config(str(path))
    assert cfg.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert cfg.cert == (str(tmp_path / "pki" / "u.crt"), "/abs/u.key")
    assert cfg.token == "from-file"


def test_inline_token_wins_over_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, doc({"server": "https://h:1"}, {"token": "inline", "tokenFile": "/missing"}))
    assert load_client_config(str(path)).token == "inline"


def test_insecure_skip_tls_verify_drops_the_ca(tmp_path: Path) -> None:
    path = write(tmp_path, doc({"server": "https://h:1", "certificate-authority": "/ca.crt",
                                "insecure-skip-tls-verify": True}))
    assert load_client_config(str(path)).ca_file is None


@pytest.mark.parametrize(("use_kubeconfig", "master", "server"), [
    (False, "", DEFAULT_MASTER),
    (False, "http://m:1", "http://m:1"),
    (True, "", "https://h:1"),
    (True, "https://override:2", "https://override:2"),
])
def test_master_and_default(tmp_path: Path, use_kubeconfig: bool, master: str, server: str) -> None:
    path = write(tmp_path, doc({"server": "https://h:1"}, {"token": "t"}))
    cfg = load_client_config(str(path) if use_kubeconfig else "", master)
    assert cfg.server == server
    assert cfg.token == ("t" if use_kubeconfig else None)
    assert DEFAULT_MASTER == "https://127.0.0.1:6443"


def test_master_fills_in_a_missing_server(tmp_path: Path) -> None:
    path = write(tmp_path, doc({}))
    assert load_client_config(str(path), "https://m:1").server == "https://m:1"


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read kubeconfig"),
    ("a: [unclosed", "cannot read kubeconfig"),
    ("- a list\n", "is not a mapping"),
    ({**doc({"server": "s"}), "current-context": ""}, "has no current-context"),
    ({**doc({"server": "s"}), "current-context": "nope"}, "has no context named 'nope'"),
    ({**doc({"server": "s"}), "clusters": []}, "has no cluster named 'c'"),
    ({**doc({"server": "s"}), "users": []}, "has no user named 'u'"),
    (doc({}), "cluster 'c' has no server"),
    (doc({"server": "s", "certificate-authority-data": "!!not base64"}), "certificate-authority-data is not valid base64"),
    (doc({"server": "s"}, {"client-certificate": "/c.crt"}), "needs both client-certificate and client-key"),
    (doc({"server": "s"}, {"tokenFile": "missing-token"}), "cannot read tokenFile"),
    ({**doc({"server": "s"}), "clusters": [{"name": "c", "cluster": "text"}]}, "cluster 'c' is not a mapping"),
])
def test_errors(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "kubeconfig" if content is None else write(tmp_path, content)
    with pytest.raises(ConfigError, match=message) as err:
        load_client_config(str(path))
    assert str(path) in str(err.value)

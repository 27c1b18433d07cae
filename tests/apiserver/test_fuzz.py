"""Generated malformed requests never produce a 5xx (or a traceback) and never half-write data."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apiserver.manifests import CLUSTER_EXAMPLES, EXAMPLES
from tests.servers import Cluster

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=12)

ALL = {**EXAMPLES, **CLUSTER_EXAMPLES}
PLURALS = sorted(ALL)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def set_path(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return obj


@st.composite
def mutated_objects(draw: st.DrawFn) -> tuple[str, Any]:
    plural = draw(st.sampled_from(PLURALS))
    obj = copy.deepcopy(ALL[plural][1])
    obj["metadata"]["name"] = draw(st.sampled_from(["fz", "fz-1", "Fz", "", "a" * 300, "x.y", "-q"]))
    for _ in range(draw(st.integers(1, 3))):
        ps = paths(obj)
        target = draw(st.sampled_from(ps))
        action = draw(st.sampled_from(["replace", "add", "delete"]))
        if action == "replace":
            obj = set_path(obj, target, draw(json_values))
        elif action == "add" and target and isinstance(_get(obj, target), dict):
            _get(obj, target)[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        elif action == "delete" and target:
            parent = _get(obj, target[:-1])
            if isinstance(parent, dict):
                parent.pop(target[-1], None)
    return plural, obj


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def url_for(plural: str, ns: str) -> str:
    prefix = ALL[plural][0]
    if plural in CLUSTER_EXAMPLES:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{ns}/{plural}"


@pytest.fixture(scope="module")
def sync_api(cluster: Cluster) -> Any:
    with httpx.Client(**cluster.admin_kwargs(), timeout=30) as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "fuzz"}})
        yield c


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:500])
    if r.status_code >= 400:
        body = r.json()
        assert body["kind"] == "Status" and body["code"] == r.status_code, body


FUZZ = settings(max_examples=350, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(case=mutated_objects(), validation=st.sampled_from(["Strict", "Warn", "Ignore", None]))
def test_mutated_creates(sync_api: httpx.Client, case: tuple[str, Any], validation: str | None) -> None:
    plural, obj = case
    params = {"fieldValidation": validation} if validation else {}
    r = sync_api.post(url_for(plural, "fuzz"), content=orjson.dumps(obj), params=params,
                      headers={"Content-Type": "application/json"})
    check(r)
    if r.status_code == 201:
        name = r.json()["metadata"]["name"]
        got = sync_api.get(f"{url_for(plural, 'fuzz')}/{name}")
        assert got.status_code == 200 and got.json() == r.json()
        check(sync_api.delete(f"{url_for(plural, 'fuzz')}/{name}", params={"gracePeriodSeconds": 0}))


patch_types = st.sampled_from(["application/merge-patch+json", "application/strategic-merge-patch+json",
                               "application/json-patch+json", "application/apply-patch+yaml", "text/plain", ""])


@FUZZ
@given(plural=st.sampled_from(PLURALS), body=json_values, ctype=patch_types)
def test_random_patches(sync_api: httpx.Client, plural: str, body: Any, ctype: str) -> None:
    base = url_for(plural, "fuzz")
    obj = copy.deepcopy(ALL[plural][1])
    obj["metadata"]["name"] = "patchme"
    sync_api.post(base, json=obj)
    before = sync_api.get(f"{base}/patchme")
    r = sync_api.patch(f"{base}/patchme", content=orjson.dumps(body), headers={"Content-Type": ctype})
    check(r)
    if r.status_code >= 400 and before.status_code == 200:
        after = sync_api.get(f"{base}/patchme")
        assert after.json() == before.json(), "a failed patch changed the object"


@FUZZ
@given(plural=st.sampled_from(PLURALS), label=st.text(max_size=30), field=st.text(max_size=30),
       limit=st.one_of(st.text(max_size=5), st.integers(-5, 5).map(str)), cont=st.text(max_size=20),
       raw=st.binary(max_size=64), method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
       suffix=st.sampled_from(["", "/x", "/x/status", "/x/scale", "/x/binding", "/x/y/z", "/%ff"]))
def test_random_requests(sync_api: httpx.Client, plural: str, label: str, field: str, limit: str, cont: str,
                         raw: bytes, method: str, suffix: str) -> None:
    params = {"labelSelector": label, "fieldSelector": field, "limit": limit, "continue": cont}
    r = sync_api.request(method, url_for(plural, "fuzz") + suffix, params=params if method == "GET" else None,
                         content=raw if method != "GET" else None, headers={"Content-Type": "application/json"})
    check(r)

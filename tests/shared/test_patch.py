"""JSON merge patch, JSON patch and strategic merge patch, checked against the RFCs and upstream."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from shared.patch import PatchError, json_merge_patch, json_patch, patch_meta, strategic_merge_patch

# ---------------------------------------------------------------- RFC 7386


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386 appendix A, in order
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        # kubectl patch --type=merge on metadata
        ({"metadata": {"labels": {"a": "1", "b": "2"}}}, {"metadata": {"labels": {"a": None, "c": "3"}}},
         {"metadata": {"labels": {"b": "2", "c": "3"}}}),
    ],
)
def test_json_merge_patch(target: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy((target, patch))
    assert json_merge_patch(target, patch) == expected
    assert (target, patch) == before


def test_json_merge_patch_returns_new_structures() -> None:
    target = {"a": {"b": [1]}, "c": {"d": 1}}
    out = json_merge_patch(target, {"x": 1})
    out["a"]["b"].append(2)
    assert target == {"a": {"b": [1]}, "c": {"d": 1}}


# ---------------------------------------------------------------- RFC 6902


DOC = {"foo": "bar", "arr": [1, 2, 3], "obj": {"a~b": 1, "c/d": 2}}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "add", "path": "/baz", "value": "qux"}], {**DOC, "baz": "qux"}),
        ([{"op": "add", "path": "/arr/1", "value": 9}], {**DOC, "arr": [1, 9, 2, 3]}),
        ([{"op": "add", "path": "/arr/-", "value": 4}], {**DOC, "arr": [1, 2, 3, 4]}),
        ([{"op": "add", "path": "/arr/3", "value": 4}], {**DOC, "arr": [1, 2, 3, 4]}),
        ([{"op": "add", "path": "/foo", "value": {"x": None}}], {**DOC, "foo": {"x": None}}),
        ([{"op": "add", "path": "", "value": [1]}], [1]),
        ([{"op": "remove", "path": "/foo"}], {"arr": [1, 2, 3], "obj": {"a~b": 1, "c/d": 2}}),
        ([{"op": "remove", "path": "/arr/0"}], {**DOC, "arr": [2, 3]}),
        ([{"op": "remove", "path": "/obj/a~0b"}, {"op": "remove", "path": "/obj/c~1d"}], {**DOC, "obj": {}}),
        ([{"op": "replace", "path": "/foo", "value": 1}], {**DOC, "foo": 1}),
        ([{"op": "replace", "path": "/arr/2", "value": 0}], {**DOC, "arr": [1, 2, 0]}),
        ([{"op": "move", "path": "/moved", "from": "/foo"}],
         {"arr": [1, 2, 3], "obj": {"a~b": 1, "c/d": 2}, "moved": "bar"}),
        ([{"op": "move", "path": "/arr/0", "from": "/arr/2"}], {**DOC, "arr": [3, 1, 2]}),
        ([{"op": "copy", "path": "/obj/x", "from": "/arr"}], {**DOC, "obj": {"a~b": 1, "c/d": 2, "x": [1, 2, 3]}}),
        ([{"op": "test", "path": "/arr", "value": [1, 2, 3]}, {"op": "test", "path": "/obj/a~0b", "value": 1.0}], DOC),
        # kubectl patch --type=json on a deployment
        ([{"op": "test", "path": "/foo", "value": "bar"}, {"op": "replace", "path": "/foo", "value": "baz"}],
         {**DOC, "foo": "baz"}),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(DOC)
    assert json_patch(DOC, ops) == expected
    assert before == DOC


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "add", "path": "/missing/x", "value": 1}], 'doc is missing path: "/missing/x"'),
        ([{"op": "remove", "path": "/nope"}], 'remove operation does not apply: doc is missing path: "/nope"'),
        ([{"op": "replace", "path": "/nope", "value": 1}], "replace operation does not apply: doc is missing key"),
        ([{"op": "move", "path": "/x", "from": "/nope"}], 'move operation does not apply: doc is missing path'),
        ([{"op": "copy", "path": "/x", "from": "/nope"}], 'copy operation does not apply: doc is missing path'),
        ([{"op": "move", "path": "/obj/inner", "from": "/obj"}], "into its own child"),
        ([{"op": "test", "path": "/foo", "value": "baz"}], "testing value /foo failed: test failed"),
        ([{"op": "test", "path": "/arr/0", "value": True}], "test failed"),  # true is not 1
        ([{"op": "add", "path": "/arr/5", "value": 1}], "Unable to access invalid index: 5"),
        ([{"op": "remove", "path": "/arr/-"}], "invalid index"),
        ([{"op": "add", "path": "/arr/01", "value": 1}], "invalid index"),
        ([{"op": "add", "path": "/x"}], "missing value"),
        ([{"op": "frobnicate", "path": "/x"}], "Unexpected kind: frobnicate"),
        ([{"op": "add", "value": 1}], "path must be a string"),
        ([{"op": "add", "path": "foo", "value": 1}], "invalid JSON pointer"),
        ([{"op": "add", "path": "/a~2", "value": 1}], "invalid JSON pointer"),
        (["add"], "invalid JSON patch operation"),
        ({"op": "add"}, "must be a list of operations"),
    ],
)
def test_json_patch_errors(ops: Any, message: str) -> None:
    with pytest.raises(PatchError, match=re.escape(message)):
        json_patch(DOC, ops)


def test_json_patch_is_atomic_for_the_caller() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 0}])
    assert doc == {"a": 1}


# ---------------------------------------------------------------- strategic merge patch

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "container image change keeps the other containers",
        {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}},
        {"spec": {"containers": [{"name": "b", "image": "b:2"}]}},
        {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}},
    ),
    (
        "env merges by name, a new variable comes first (no $setElementOrder)",
        {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}},
        {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}]}},
        {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"},
                                                       {"name": "Z", "value": "4"}]}]}},
    ),
    (
        "a new list element is put before the server's when the patch names no existing one",
        {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
        {"spec": {"containers": [{"name": "c"}]}},
        {"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}},
    ),
    (
        "$patch: delete removes one container",
        {"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}},
        {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
        {"spec": {"containers": [{"name": "a"}, {"name": "c"}]}},
    ),
    (
        "$patch: replace replaces a merging list",
        {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}},
        {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}},
        {"spec": {"containers": [{"name": "z", "image": "z"}]}},
    ),
    (
        "$patch: replace on a map",
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
        {"metadata": {"labels": {"c": "3"}}},
    ),
    (
        "$patch: delete on a nested map empties it (upstream: 'delete map from nested map')",
        {"metadata": {"labels": {"a": "1"}}},
        {"metadata": {"labels": {"$patch": "delete"}}},
        {"metadata": {"labels": {}}},
    ),
    (
        "kubectl apply: $setElementOrder orders containers, changed container merged",
        {"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]}, {"name": "sidecar", "image": "s:1"}]}}}},
        {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
         "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                                        "containers": [{"name": "app", "image": "app:2"}]}}}},
        {"kind": "Deployment",
         "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
         "spec": {"replicas": 1, "template": {"spec": {"containers": [
             {"name": "sidecar", "image": "s:1"}, {"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]}]}}}},
    ),
    (
        "kubectl apply: $setElementOrder/env inside a container element, and a deleted variable",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "1"}, {"name": "C", "value": "1"}]}]}}}},
        {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "$setElementOrder/env": [{"name": "C"}, {"name": "D"}, {"name": "A"}],
                            "env": [{"name": "D", "value": "2"}, {"name": "B", "$patch": "delete"}]}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
            {"name": "C", "value": "1"}, {"name": "D", "value": "2"}, {"name": "A", "value": "1"}]}]}}}},
    ),
    (
        "CronJob: containers under spec.jobTemplate.spec.template.spec merge by name",
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b"}]}}}}}},
        {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:2", "args": ["x"]}, {"name": "b"}]}}}}}},
    ),
    (
        "Service ports merge by port",
        {"kind": "Service", "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                               {"name": "https", "port": 443}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {"kind": "Service", "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9090},
                                               {"name": "https", "port": 443}]}},
    ),
    (
        "container ports merge by containerPort",
        {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"},
                                                         {"containerPort": 81}]}]}},
        {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81, "protocol": "UDP"}]}]}},
        {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"},
                                                         {"containerPort": 81, "protocol": "UDP"}]}]}},
    ),
    (
        "EndpointSubset ports have no strategy: subsets are replaced",
        {"kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
        {"subsets": [{"ports": [{"port": 81}]}]},
        {"kind": "Endpoints", "subsets": [{"ports": [{"port": 81}]}]},
    ),
    (
        "tolerations are replaced",
        {"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}},
        {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
        {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
    ),
    (
        "finalizers merge as an ordered set",
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c"]}},
        {"metadata": {"finalizers": ["a", "b", "c"]}},
    ),
    (
        "$deleteFromPrimitiveList removes finalizers",
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}},
        {"metadata": {"finalizers": ["a", "c"]}},
    ),
    (
        "$deleteFromPrimitiveList with $setElementOrder (kubectl apply removing a finalizer)",
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$setElementOrder/finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"finalizers": ["c", "a"]}},
    ),
    (
        "$retainKeys clears the union members not listed (deployment strategy)",
        {"kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"kind": "Deployment", "spec": {"strategy": {"type": "Recreate"}}},
    ),
    (
        "$retainKeys in a volume element switches its source",
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}},
        {"spec": {"volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}]}},
        {"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]}},
    ),
    (
        "status conditions merge by type",
        {"kind": "DaemonSet", "status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}},
        {"status": {"conditions": [{"type": "B", "status": "True"}]}},
        {"kind": "DaemonSet", "status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}},
    ),
    (
        "node addresses merge by type",
        {"kind": "Node", "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                                  {"type": "Hostname", "address": "n1"}]}},
        {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}},
        {"kind": "Node", "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"},
                                                  {"type": "Hostname", "address": "n1"}]}},
    ),
    (
        "ownerReferences merge by uid",
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "controller": True}]}},
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b", "controller": True}]}},
    ),
    (
        "PodDisruptionBudget selector is replaced, a Deployment's merges",
        {"kind": "PodDisruptionBudget", "spec": {"selector": {"matchLabels": {"a": "1"}}}},
        {"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}},
        {"kind": "PodDisruptionBudget", "spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}},
    ),
    (
        "maps merge and null deletes",
        {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}},
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"replicas": 3, "paused": None}},
        {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3}},
    ),
    (
        "a new subtree is taken without its nulls and directives",
        {"spec": {}},
        {"spec": {"nodeSelector": {"$patch": "replace", "disk": "ssd", "gone": None},
                  "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X"}]},
                                 {"name": "b", "$patch": "delete"}]}},
        {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "env": [{"name": "X"}]}]}},
    ),
    (
        "a whole-object $patch: replace",
        {"a": 1, "b": 2},
        {"$patch": "replace", "c": 3},
        {"c": 3},
    ),
]


@pytest.mark.parametrize(("name", "target", "patch", "expected"), CASES, ids=[c[0] for c in CASES])
def test_strategic_merge_patch(name: str, target: dict[str, Any], patch: dict[str, Any],
                               expected: dict[str, Any]) -> None:
    before = copy.deepcopy((target, patch))
    assert strategic_merge_patch(target, patch) == expected
    assert (target, patch) == before, "inputs must not be mutated"


# Cases copied from apimachinery's strategicpatch/patch_test.go (customStrategicMergePatchTestCaseData
# and customStrategicMergePatchRawTestCases), with its test schema mapped onto real fields:
# mergingList (merge key "name") -> spec.containers, mergingIntList -> metadata.finalizers,
# simpleMap -> metadata.labels.
def _ml(*items: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(items)}}


def _il(*items: Any) -> dict[str, Any]:
    return {"metadata": {"finalizers": list(items)}}


UPSTREAM: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | str]] = [
    ("unique scalars when merging lists", _il(1, 2), _il(2, 3), _il(1, 2, 3)),
    ("delete all items from merging list", _ml({"name": 1}, {"name": 2}), _ml({"$patch": "replace"}), _ml()),
    ("merge empty merging lists", _ml(), _ml(), _ml()),
    ("delete all keys from map", {"name": 1, "value": 1}, {"$patch": "replace"}, {}),
    ("add key and delete all keys from map", {"name": 1, "value": 1}, {"other": "a", "$patch": "replace"},
     {"other": "a"}),
    ("delete all duplicate entries in a merging list",
     _ml({"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}),
     _ml({"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}), _ml({"name": 2, "value": "a"})),
    ("preserve the order from the patch in a merging list",
     _ml({"name": 1}, {"name": 2, "value": "b"}, {"name": 3}),
     _ml({"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}),
     _ml({"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"})),
    ("preserve the order from the patch in a merging list 2",
     _ml({"name": 1}, {"name": 2, "value": "b"}, {"name": 3}),
     _ml({"name": 3, "value": "c"}, {"name": 1, "value": "a"}),
     _ml({"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"})),
    ("preserve the order from the patch in a merging int list", _il(1, 2, 3), _il(3, 1, 2), _il(3, 1, 2)),
    ("preserve the order from the patch in a merging int list 2", _il(1, 2, 3), _il(3, 1), _il(2, 3, 1)),
    ("$setElementOrder contains item that is not present in the list to be merged",
     _ml({"name": 1}, {"name": 3}),
     {"spec": {"$setElementOrder/containers": [{"name": 3}, {"name": 2}, {"name": 1}],
               "containers": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}},
     _ml({"name": 3, "value": 3}, {"name": 1, "value": 1})),
    ("$setElementOrder contains item that is not present in the int list to be merged",
     _il(1, 3), {"metadata": {"$setElementOrder/finalizers": [3, 2, 1]}}, _il(3, 1)),
    ("should check if order in $setElementOrder and patch list match",
     _ml({"name": 1}, {"name": 3}, {"name": 2}),
     {"spec": {"$setElementOrder/containers": [{"name": 1}, {"name": 2}, {"name": 3}],
               "containers": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}},
     "doesn't match"),
    ("should check if order in $setElementOrder and patch int list match",
     _il(1, 3, 2), {"metadata": {"$setElementOrder/finalizers": [1, 2, 3], "finalizers": [3, 1]}}, "doesn't match"),
    ("missing merge key should error out", _ml({"name": 1, "value": "a"}), _ml({"value": "b"}),
     "does not contain declared merge key"),
    ("$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list",
     _il(1, 2), {"metadata": {"$deleteFromPrimitiveList/finalizers": [3]}}, _il(1, 2)),
    ("$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
     {"metadata": {"name": "x"}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": [3]}}, {"metadata": {"name": "x"}}),
]


@pytest.mark.parametrize(("name", "target", "patch", "expected"), UPSTREAM, ids=[c[0] for c in UPSTREAM])
def test_upstream_cases(name: str, target: dict[str, Any], patch: dict[str, Any],
                        expected: dict[str, Any] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(PatchError, match=expected):
            strategic_merge_patch(target, patch)
    else:
        assert strategic_merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("target", "patch", "message"),
    [
        ({"spec": {"containers": [{"name": "a"}]}}, {"spec": {"containers": [{"image": "x"}]}},
         "map: map[image:x] does not contain declared merge key: name"),
        ({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81}]}]}},
         {"spec": {"containers": [{"name": "a", "ports": [{"port": 80}]}]}},
         "map: map[port:80] does not contain declared merge key: containerPort"),
        ({"spec": {}}, {"spec": {"$patch": "bogus"}}, "unknown patch type: bogus in map: map[$patch:bogus]"),
        ({"spec": {}}, {"spec": {"$patch": "merge"}}, "unknown patch type: merge"),
        ({"spec": {"containers": [{"name": "a"}]}}, {"spec": {"containers": [{"name": "a", "$patch": "merge"}]}},
         "merging lists cannot yet be specified in the patch"),
        ({"spec": {"containers": [{"name": "a"}]}}, {"spec": {"containers": [{"name": "a", "$patch": "nope"}]}},
         "unknown patch type: nope"),
        ({"spec": {"containers": [{"name": "a"}]}}, {"spec": {"containers": [{"$patch": "delete"}]}},
         "does not contain declared merge key: name"),
        ({"metadata": {"finalizers": ["a"]}}, {"metadata": {"$deleteFromPrimitiveListX/finalizers": ["a"]}},
         "invalid patch format of primitive list"),
        ({"spec": {}}, {"spec": {"$setElementOrderfoo": []}}, "invalid patch format of setElementOrder list"),
        ({"spec": {"strategy": {}}}, {"spec": {"strategy": {"$retainKeys": "type"}}},
         "invalid patch format of retainKeys"),
        ({"spec": {"strategy": {}}}, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
         "invalid patch format of retainKeys"),
        ({"metadata": {"finalizers": []}}, {"metadata": {"finalizers": [["b"]]}}, "lists of lists are not supported"),
        ({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [1]}}, "list element types are not identical"),
    ],
)
def test_strategic_merge_patch_errors(target: dict[str, Any], patch: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError, match=re.escape(message)):
        strategic_merge_patch(target, patch)


def test_strategic_merge_patch_rejects_non_objects() -> None:
    with pytest.raises(PatchError, match="must be a JSON object"):
        strategic_merge_patch({}, [{"op": "add"}])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "kind", "meta"),
    [
        (("spec", "containers"), "Pod", ("merge", "name")),
        (("spec", "template", "spec", "initContainers", "env"), "Deployment", ("merge", "name")),
        (("spec", "template", "spec", "containers", "ports"), "StatefulSet", ("merge", "containerPort")),
        (("spec", "ports"), "Service", ("merge", "port")),
        (("subsets", "ports"), "Endpoints", ("", "")),
        (("spec", "tolerations"), "Pod", ("", "")),
        (("spec", "topologySpreadConstraints"), "Pod", ("merge", "topologyKey")),
        (("status", "containerStatuses"), "Pod", ("", "")),
        (("spec", "readinessGates"), "Pod", ("", "")),
        (("spec", "selector"), "PodDisruptionBudget", ("replace", "")),
        (("spec", "selector"), "Deployment", ("", "")),
        (("secrets",), "ServiceAccount", ("merge", "name")),
        (("webhooks",), "ValidatingWebhookConfiguration", ("merge", "name")),
        (("status", "conditions"), "CertificateSigningRequest", ("", "")),
        (("metadata", "finalizers"), None, ("merge", "")),
    ],
)
def test_patch_meta(path: tuple[str, ...], kind: str | None, meta: tuple[str, str]) -> None:
    assert patch_meta(path, kind) == meta

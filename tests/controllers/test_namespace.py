"""The namespace controller's status conditions, as upstream's namespaceConditionUpdater sets them."""

from __future__ import annotations

from typing import Any

from services.controllers.namespace import CONDITION_TYPES, Remaining, namespaced_resources, update_conditions


def test_all_ok_conditions_are_written_once() -> None:
    st: dict[str, Any] = {"phase": "Terminating"}
    assert update_conditions(st, Remaining().conditions())
    assert [c["type"] for c in st["conditions"]] == list(CONDITION_TYPES)
    assert all(c["status"] == "False" for c in st["conditions"])
    by_type = {c["type"]: c for c in st["conditions"]}
    assert by_type["NamespaceContentRemaining"]["reason"] == "ContentRemoved"
    assert by_type["NamespaceDeletionContentFailure"]["message"] == \
        "All content successfully deleted, may be waiting on finalization"
    assert not update_conditions(st, Remaining().conditions())  # nothing changed


def test_remaining_content_and_finalizers() -> None:
    st: dict[str, Any] = {}
    update_conditions(st, Remaining().conditions())
    before = {c["type"]: c["lastTransitionTime"] for c in st["conditions"]}
    left = Remaining(estimate=15, by_resource={"pods.": 3, "deployments.apps": 1}, by_finalizer={"x/y": 2, "a/b": 1},
                     errors=["configmaps: boom"])
    assert update_conditions(st, left.conditions())
    by_type = {c["type"]: c for c in st["conditions"]}
    assert by_type["NamespaceContentRemaining"] == {
        "type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
        "message": "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 3 resource instances",
        "lastTransitionTime": by_type["NamespaceContentRemaining"]["lastTransitionTime"]}
    assert by_type["NamespaceFinalizersRemaining"]["message"] == \
        "Some content in the namespace has finalizers remaining: a/b in 1 resource instances, x/y in 2 resource instances"
    assert by_type["NamespaceDeletionContentFailure"]["reason"] == "ContentDeletionFailed"
    assert by_type["NamespaceDeletionDiscoveryFailure"]["lastTransitionTime"] == before["NamespaceDeletionDiscoveryFailure"]


def test_every_namespaced_resource_is_emptied() -> None:
    plurals = {r.plural for r in namespaced_resources()}
    assert {"pods", "replicasets", "deployments", "configmaps", "secrets", "events", "endpointslices"} <= plurals
    assert "namespaces" not in plurals and "nodes" not in plurals

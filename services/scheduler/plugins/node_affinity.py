"""NodeAffinity: ``spec.nodeSelector`` and node affinity, required (filter) and preferred (score).

Why this exists: pods pin themselves to nodes by labels; kube-scheduler's NodeAffinity plugin
(``component-helpers/scheduling/corev1/nodeaffinity``) decides it. Semantics reproduced:

* ``nodeSelector``: every key must be a node label with that exact value;
* required ``nodeSelectorTerms`` are ORed, an empty term (or an invalid one) selects nothing;
  within a term ``matchExpressions`` are ANDed: In, NotIn (true when the label is absent),
  Exists, DoesNotExist, Gt / Lt (label and the single value parsed as int64);
  ``matchFields`` support ``metadata.name`` with In / NotIn of exactly one value;
* preferred terms add their weight when they match (an empty preference matches every node), and
  the sums are normalized to 0..100 by the highest.

Failure text: ``node(s) didn't match Pod's node affinity/selector`` (unresolvable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from services.scheduler.framework import (
    CycleState,
    FilterResult,
    NodeInfo,
    Obj,
    Unresolvable,
    default_normalize,
)

__all__ = ["ERR_REASON_POD", "NodeAffinity", "RequiredNodeAffinity", "compile_term"]

ERR_REASON_POD: Final = Unresolvable("node(s) didn't match Pod's node affinity/selector")

_INT64 = re.compile(r"[+-]?[0-9]+")
_REQUIRED_KEY: Final = "NodeAffinity/required"
_PREFERRED_KEY: Final = "NodeAffinity/preferred"

# A compiled requirement: (key, operator, values) with operator one of In NotIn Exists DoesNotExist Gt Lt.
Requirement = tuple[str, str, frozenset[str] | int | None]
# A compiled term: (label requirements, field requirements as (name, In?, value)); None when invalid.
Term = tuple[tuple[Requirement, ...], tuple[tuple[str, bool, str], ...]]


def _int64(s: str) -> int | None:
    if _INT64.fullmatch(s):
        v = int(s)
        if -(2**63) <= v < 2**63:
            return v
    return None


def _compile_requirement(expr: Mapping[str, Any]) -> Requirement | None:
    key = str(expr.get("key") or "")
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or ()]
    if op in ("In", "NotIn"):
        return (key, op, frozenset(values)) if values else None
    if op in ("Exists", "DoesNotExist"):
        return None if values else (key, op, None)
    if op in ("Gt", "Lt"):
        if len(values) != 1:
            return None
        v = _int64(values[0])
        return None if v is None else (key, op, v)
    return None


def compile_term(term: Mapping[str, Any] | None) -> Term | None:
    """Compile a NodeSelectorTerm; None if any requirement is invalid (upstream drops such terms)."""
    term = term or {}
    labels: list[Requirement] = []
    for expr in term.get("matchExpressions") or ():
        req = _compile_requirement(expr)
        if req is None:
            return None
        labels.append(req)
    fields: list[tuple[str, bool, str]] = []
    for expr in term.get("matchFields") or ():
        op, values = expr.get("operator"), expr.get("values") or []
        if op not in ("In", "NotIn") or len(values) != 1:
            return None
        fields.append((str(expr.get("key") or ""), op == "In", str(values[0])))
    return tuple(labels), tuple(fields)


def _requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    key, op, values = req
    value = labels.get(key)
    if op == "In":
        return value is not None and isinstance(values, frozenset) and value in values
    if op == "NotIn":
        return value is None or not isinstance(values, frozenset) or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if value is None:
        return False
    have = _int64(value)
    if have is None or not isinstance(values, int):
        return False
    return have > values if op == "Gt" else have < values


def term_matches(term: Term, labels: Mapping[str, str], node_name: str) -> bool:
    """Whether ``labels`` / ``node_name`` satisfy a compiled term (every requirement)."""
    reqs, fields = term
    for req in reqs:
        if not _requirement_matches(req, labels):
            return False
    for name, is_in, value in fields:
        have = node_name if name == "metadata.name" else ""
        if (have == value) != is_in:
            return False
    return True


class RequiredNodeAffinity:
    """``nodeaffinity.GetRequiredNodeAffinity(pod)``: nodeSelector AND (any required term)."""

    __slots__ = ("node_selector", "terms")

    def __init__(self, pod: Obj) -> None:
        spec = pod.get("spec") or {}
        self.node_selector: dict[str, str] = dict(spec.get("nodeSelector") or {})
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        self.terms: tuple[Term, ...] | None = None
        if required is not None:
            compiled = []
            for t in required.get("nodeSelectorTerms") or ():
                c = compile_term(t)
                if c is not None and (c[0] or c[1]):  # empty or invalid terms select nothing
                    compiled.append(c)
            self.terms = tuple(compiled)

    @property
    def empty(self) -> bool:
        return not self.node_selector and self.terms is None

    def matches(self, node_info: NodeInfo) -> bool:
        labels = node_info.labels
        for k, v in self.node_selector.items():
            if labels.get(k) != v:
                return False
        if self.terms is None:
            return True
        return any(term_matches(t, labels, node_info.name) for t in self.terms)


class NodeAffinity:
    """Required node affinity + nodeSelector as a filter; preferred terms as a weighted score."""

    name = "NodeAffinity"

    def __init__(self, weight: int = 2) -> None:
        self.weight = weight

    def pre_filter(self, pod: Obj, state: CycleState) -> bool:
        required = RequiredNodeAffinity(pod)
        if required.empty:
            return False
        state.write(_REQUIRED_KEY, required)
        return True

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        required = state.get(_REQUIRED_KEY)
        if not isinstance(required, RequiredNodeAffinity):
            required = RequiredNodeAffinity(pod)
            state.write(_REQUIRED_KEY, required)
        return None if required.matches(node_info) else ERR_REASON_POD

    def filter_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[FilterResult]:
        """``filter`` for many nodes at once (same answers, fewer Python calls)."""
        required = state.get(_REQUIRED_KEY)
        if not isinstance(required, RequiredNodeAffinity):
            required = RequiredNodeAffinity(pod)
            state.write(_REQUIRED_KEY, required)
        matches = required.matches
        return [None if matches(ni) else ERR_REASON_POD for ni in nodes]

    def pre_score(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> bool:
        preferred = _preferred_terms(pod)
        if not preferred:
            return False  # upstream returns Skip: every node would score 0
        state.write(_PREFERRED_KEY, preferred)
        return True

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        preferred = state.get(_PREFERRED_KEY)
        if not isinstance(preferred, tuple):
            preferred = _preferred_terms(pod)
        labels, name = node_info.labels, node_info.name
        return sum(w for w, t in preferred if term_matches(t, labels, name))

    def normalize(self, scores: dict[str, int]) -> dict[str, int]:
        return default_normalize(scores)


def _preferred_terms(pod: Obj) -> tuple[tuple[int, Term], ...]:
    prefs = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("preferredDuringSchedulingIgnoredDuringExecution") or ())
    out: list[tuple[int, Term]] = []
    for p in prefs:
        weight = int(p.get("weight") or 0)
        if weight == 0:
            continue
        term = compile_term(p.get("preference"))
        if term is not None:
            out.append((weight, term))
    return tuple(out)

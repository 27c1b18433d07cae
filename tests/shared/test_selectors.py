"""Label and field selectors behave, and fail, as apimachinery's do."""

from __future__ import annotations

from typing import Any

import pytest

from shared.selectors import (
    ALLOWED_FIELDS,
    FieldRequirement,
    LabelSelector,
    SelectorError,
    escape_field_value,
    object_fields,
    parse_field_selector,
    parse_label_selector,
)

KEY_REGEX_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_REGEX_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# ---------------------------------------------------------------- label selector parsing


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a in (b,c)", "a in (b,c)"),
        ("a notin (c,b)", "a notin (b,c)"),
        ("a", "a"),
        ("!a", "!a"),
        ("a>5", "a>5"),
        ("a<5", "a<5"),
        ("a=", "a="),
        ("b=1,a=2", "a=2,b=1"),  # sorted by key
        ("  a  in ( b , c ) ,\tb !=  x ", "a in (b,c),b!=x"),  # whitespace tolerated
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),  # upstream doc example
        ("a in (in)", "a in (in)"),  # keywords are identifiers in value position
        ("example.com/app=web", "example.com/app=web"),
        ("a in (b,b)", "a in (b)"),  # a set: duplicates collapse
    ],
)
def test_parse_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


OPERATOR_CASES: list[tuple[str, dict[str, str], bool]] = [
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a==b", {"a": "b"}, True),
    ("a!=b", {"a": "c"}, True),
    ("a!=b", {}, True),  # absent keys satisfy !=
    ("a!=b", {"a": "b"}, False),
    ("a in (b,c)", {"a": "c"}, True),
    ("a in (b,c)", {"a": "d"}, False),
    ("a in (b,c)", {}, False),
    ("a notin (b,c)", {"a": "d"}, True),
    ("a notin (b,c)", {}, True),
    ("a notin (b,c)", {"a": "b"}, False),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("!a", {"a": "x"}, False),
    ("a>5", {"a": "6"}, True),
    ("a>5", {"a": "5"}, False),
    ("a>5", {"a": "x"}, False),
    ("a<5", {"a": "-1"}, True),
    ("a<5", {}, False),
    ("a=", {"a": ""}, True),
    ("a in ()", {"a": ""}, True),
    ("a=b,c", {"a": "b", "c": "1"}, True),  # comma is AND
    ("a=b,c", {"a": "b"}, False),
    ("", {"anything": "x"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), OPERATOR_CASES)
def test_operators_match(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a$", f'unable to parse requirement: <nil>: Invalid value: "a$": {KEY_REGEX_MSG}'),
        ("a=-x", f'unable to parse requirement: values[0][a]: Invalid value: "-x": {VALUE_REGEX_MSG}'),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a>x", 'unable to parse requirement: values[0]: Invalid value: "x": '
                "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("a" * 64, f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": '
                   "name part must be no more than 63 characters"),
        ("a/b/c=d", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a valid label key must consist'
                    " of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
                    "(e.g. 'example.com/MyName')"),
        ("Example.com/a=b", 'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part a '
                            "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                            "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
                            "[a-z0-9])?)*')"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector(text)
    assert str(err.value) == message


def test_value_too_long() -> None:
    with pytest.raises(SelectorError, match="must be no more than 63 characters"):
        parse_label_selector("a=" + "b" * 64)


# ---------------------------------------------------------------- metav1.LabelSelector


def test_nil_selector_matches_nothing_and_empty_matches_everything() -> None:
    nil, empty = LabelSelector.from_api(None), LabelSelector.from_api({})
    assert not nil.matches({}) and not nil.matches({"a": "b"})
    assert not nil.empty and nil.nothing
    assert empty.matches({}) and empty.matches({"a": "b"}) and empty.empty
    assert LabelSelector.from_api({"matchLabels": {}, "matchExpressions": []}).empty


@pytest.mark.parametrize(
    ("sel", "labels", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": ""}, False),
        ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
         {"app": "web", "env": "dev"}, False),
    ],
)
def test_from_api_matches(sel: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.from_api(sel).matches(labels) is expected


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
         '"Equals" is not a valid label selector operator'),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
         "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'),
        ({"matchLabels": {"a$": "b"}}, f'key: Invalid value: "a$": {KEY_REGEX_MSG}'),
    ],
)
def test_from_api_errors(sel: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as err:
        LabelSelector.from_api(sel)
    assert str(err.value) == message


def test_from_api_string_form_and_equalities() -> None:
    sel = LabelSelector.from_api({"matchLabels": {"b": "2", "a": "1"},
                                  "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                                                       {"key": "d", "operator": "In", "values": ["z"]}]})
    assert str(sel) == "a=1,b=2,c in (x,y),d in (z)"
    assert sel.equalities() == {"a": "1", "b": "2", "d": "z"}
    assert parse_label_selector("a!=1,b notin (x),c").equalities() == {}
    assert LabelSelector.from_api(None).equalities() == {}


# ---------------------------------------------------------------- field selectors


@pytest.mark.parametrize(
    ("text", "requirements", "canonical"),
    [
        ("", [], ""),
        ("metadata.name=a", [("metadata.name", "=", "a")], "metadata.name=a"),
        ("metadata.name==a", [("metadata.name", "=", "a")], "metadata.name=a"),
        ("status.phase!=Running,spec.nodeName=n1",
         [("spec.nodeName", "=", "n1"), ("status.phase", "!=", "Running")], "spec.nodeName=n1,status.phase!=Running"),
        ("a=", [("a", "=", "")], "a="),
        ("a=x,,", [("a", "=", "x")], "a=x"),
        (r"a=b\,c", [("a", "=", "b,c")], r"a=b\,c"),
        (r"a=b\=c\\d", [("a", "=", "b=c\\d")], r"a=b\=c\\d"),
        ("a!=b=", None, None),  # unescaped '=' in the value
    ],
)
def test_field_selector_parse(text: str, requirements: list[tuple[str, str, str]] | None,
                              canonical: str | None) -> None:
    if requirements is None:
        with pytest.raises(SelectorError, match="unescapedRune character in value: 61"):
            parse_field_selector(text)
        return
    sel = parse_field_selector(text)
    assert sel.requirements == tuple(FieldRequirement(*r) for r in requirements)
    assert str(sel) == canonical
    assert parse_field_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_field_selector(text)
    assert str(err.value) == message


def test_field_selector_matching() -> None:
    sel = parse_field_selector("spec.nodeName=,status.phase!=Failed")
    assert sel.matches({"status.phase": "Running"})  # missing fields are ""
    assert not sel.matches({"spec.nodeName": "n1"})
    assert not sel.matches({"status.phase": "Failed"})
    assert parse_field_selector("").matches({}) and parse_field_selector("").empty
    assert parse_field_selector("metadata.name=a,spec.nodeName!=b").value_for("metadata.name") == "a"
    assert parse_field_selector("spec.nodeName!=b").value_for("spec.nodeName") is None
    assert escape_field_value("a,b=c\\") == "a\\,b\\=c\\\\"


@pytest.mark.parametrize(
    ("resource", "text", "message"),
    [
        ("pods", "spec.foo=1", "field label not supported: spec.foo"),
        ("nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        ("jobs", "spec.foo=1", 'field label "spec.foo" not supported for Job'),
        ("configmaps", "spec.foo=1",
         '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'),
        ("replicasets", "status.replicas=1",
         '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ],
)
def test_unsupported_field(resource: str, text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_field_selector(text).for_resource(resource)
    assert str(err.value) == message


def test_check_fields_and_aliases() -> None:
    parse_field_selector("metadata.name=a,status.phase=Running").check_fields(ALLOWED_FIELDS["pods"], "pods")
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.foo$"):
        parse_field_selector("spec.foo=1").check_fields({"metadata.name", "spec.bar"})
    with pytest.raises(SelectorError, match="is not a known field selector"):
        parse_field_selector("spec.foo=1").check_fields({"metadata.name", "metadata.namespace"})
    assert str(parse_field_selector("spec.host=n1").for_resource("pods")) == "spec.nodeName=n1"


# ---------------------------------------------------------------- selectable fields


def test_object_fields_pod() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1", "hostNetwork": True},
           "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]}}
    fields = object_fields("pods", pod)
    assert fields["metadata.name"] == "p" and fields["metadata.namespace"] == "ns"
    assert fields["spec.nodeName"] == "n1" and fields["spec.hostNetwork"] == "true"
    assert fields["status.podIP"] == "10.0.0.1" and fields["spec.restartPolicy"] == ""
    assert parse_field_selector("spec.nodeName=n1,status.phase=Running").matches(fields)


@pytest.mark.parametrize(
    ("resource", "obj", "expected"),
    [
        ("nodes", {"metadata": {"name": "n"}}, {"metadata.namespace": "", "spec.unschedulable": "false"}),
        ("jobs", {"status": {"succeeded": 2}}, {"status.successful": "2"}),
        ("replicationcontrollers", {}, {"status.replicas": "0"}),
        ("secrets", {"type": "Opaque"}, {"type": "Opaque"}),
        ("namespaces", {"status": {"phase": "Active"}}, {"status.phase": "Active"}),
        ("events", {"involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
                    "reportingComponent": "kubelet", "type": "Normal"},
         {"involvedObject.kind": "Pod", "involvedObject.name": "p", "involvedObject.uid": "",
          "reason": "Started", "source": "kubelet", "type": "Normal"}),
        ("configmaps", {"metadata": {"name": "c"}}, {"metadata.name": "c", "metadata.namespace": ""}),
    ],
)
def test_object_fields(resource: str, obj: dict[str, Any], expected: dict[str, str]) -> None:
    fields = object_fields(resource, obj)
    assert {k: fields[k] for k in expected} == expected

"""Generate ``shared/api/models.py``: the Kubernetes API types as strict pydantic v2 models.

Why this exists: the apiserver must decode request bodies the way Kubernetes does (unknown
fields rejected, a string where an int belongs rejected, JSON names exactly as in the API)
and store them as JSON. Writing ~270 nested classes by hand would drift from upstream, so we
derive them from the type graph of the official ``kubernetes`` Python client (a test-only
dependency: each client model class has ``openapi_types`` {python_attr: type string} and
``attribute_map`` {python_attr: jsonName}). The output is checked in, so nothing at runtime
imports the client.

What the generator decides (and the client does not tell it):

* every field is optional (``None``); required-ness is checked elsewhere with Kubernetes'
  own error messages;
* scalars are strict; ``datetime``/``date``/``bytes`` stay the strings found on the wire;
* ``resource.Quantity`` fields, typed ``str`` / ``dict(str, str)`` by the client, become
  ``Quantity`` (string or number), see ``QUANTITY_MAP_FIELDS`` / ``QUANTITY_SCALAR_FIELDS``;
* ``intstr.IntOrString`` fields, typed ``object`` by the client, become ``IntOrString``,
  see ``INT_OR_STRING_FIELDS``; every other ``object`` field must be listed in
  ``ANY_FIELDS`` or generation fails, so a client upgrade cannot slip in an unreviewed one.

Usage (from the repository root)::

    .venv/bin/python tools/gen_models.py          # rewrite shared/api/models.py
    .venv/bin/python tools/gen_models.py --check  # exit 1 if the checked-in file is stale
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "shared" / "api" / "models.py"

# (apiVersion, kind, client class name), in the order they appear in KINDS.
ROOT_KINDS: list[tuple[str, str, str]] = [
    ("v1", "Namespace", "V1Namespace"),
    ("v1", "Node", "V1Node"),
    ("v1", "Pod", "V1Pod"),
    ("v1", "Service", "V1Service"),
    ("v1", "Endpoints", "V1Endpoints"),
    ("v1", "ConfigMap", "V1ConfigMap"),
    ("v1", "Secret", "V1Secret"),
    ("v1", "Event", "CoreV1Event"),
    ("v1", "Binding", "V1Binding"),
    ("v1", "ServiceAccount", "V1ServiceAccount"),
    ("apps/v1", "Deployment", "V1Deployment"),
    ("apps/v1", "ReplicaSet", "V1ReplicaSet"),
    ("apps/v1", "DaemonSet", "V1DaemonSet"),
    ("apps/v1", "StatefulSet", "V1StatefulSet"),
    ("batch/v1", "Job", "V1Job"),
    ("batch/v1", "CronJob", "V1CronJob"),
    ("coordination.k8s.io/v1", "Lease", "V1Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "V1EndpointSlice"),
    ("autoscaling/v1", "Scale", "V1Scale"),
    ("rbac.authorization.k8s.io/v1", "Role", "V1Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "V1ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "V1RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "V1ClusterRoleBinding"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "V1SelfSubjectAccessReview"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "V1SelfSubjectReview"),
    ("v1", "Status", "V1Status"),
    ("v1", "DeleteOptions", "V1DeleteOptions"),
]

# Not kinds, but wanted even if nothing above referenced them.
EXTRA_ROOTS: list[str] = ["V1ObjectMeta", "V1OwnerReference", "V1LabelSelector", "V1ManagedFieldsEntry"]

# dict(str, str) fields that are a core/v1 ResourceList (map of resource name -> Quantity),
# matched by JSON name in any class.
QUANTITY_MAP_FIELDS: frozenset[str] = frozenset(
    {"limits", "requests", "capacity", "allocatable", "hard", "used", "overhead", "allocatedResources"}
)

# Single Quantity fields the client types as 'str': (client class, JSON name).
QUANTITY_SCALAR_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1EmptyDirVolumeSource", "sizeLimit"),
        ("V1ResourceFieldSelector", "divisor"),
        ("V1NodeAllocatableMappedResources", "quantity"),
        ("V1NodeAllocatableOverheadResources", "perContainer"),
        ("V1NodeAllocatableOverheadResources", "perPod"),
    }
)

# 'object' fields that are intstr.IntOrString: (client class, JSON name).
INT_OR_STRING_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1ServicePort", "targetPort"),
        ("V1HTTPGetAction", "port"),
        ("V1TCPSocketAction", "port"),
        ("V1RollingUpdateDeployment", "maxSurge"),
        ("V1RollingUpdateDeployment", "maxUnavailable"),
        ("V1RollingUpdateDaemonSet", "maxSurge"),
        ("V1RollingUpdateDaemonSet", "maxUnavailable"),
        ("V1RollingUpdateStatefulSetStrategy", "maxUnavailable"),
        ("V1PodDisruptionBudgetSpec", "minAvailable"),
        ("V1PodDisruptionBudgetSpec", "maxUnavailable"),
    }
)

# 'object' fields reviewed and left as Any: (client class, JSON name).
ANY_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1ManagedFieldsEntry", "fieldsV1"),  # metav1.FieldsV1: arbitrary JSON
        # Empty marker structs ({}) of scheduling.k8s.io/v1alpha3, referenced by batch/v1
        # JobSchedulingConfiguration; the client has no class for them.
        ("V1alpha3WorkloadPodGroupDisruptionMode", "all"),
        ("V1alpha3WorkloadPodGroupDisruptionMode", "single"),
        ("V1alpha3WorkloadPodGroupSchedulingPolicy", "basic"),
    }
)

# Client type strings that map straight to one annotation.
SCALARS: dict[str, str] = {
    "str": "StrictStr",
    "int": "StrictInt",
    "bool": "StrictBool",
    "float": "StrictInt | StrictFloat",  # JSON numbers: keep 1 as 1, accept 1.5
    "datetime": "StrictStr",  # metav1.Time / MicroTime: RFC 3339 string, kept as given
    "date": "StrictStr",
    "bytes": "StrictStr",  # []byte: base64 string on the wire
    "object": "Any",
}

# Names defined at module level in the output; no generated class may take one.
RESERVED_MODULE_NAMES: frozenset[str] = frozenset(
    {
        "annotations",
        "Any",
        "BaseModel",
        "ConfigDict",
        "Field",
        "StrictBool",
        "StrictFloat",
        "StrictInt",
        "StrictStr",
        "TypeAlias",
        "K8sModel",
        "Quantity",
        "IntOrString",
        "KINDS",
    }
)

# A field attribute may not shadow a name its own annotation uses.
SHADOWING_FIELD_NAMES: frozenset[str] = frozenset({"list", "dict", "int", "str", "bool", "float"})

# Client class prefixes: V1, V1alpha3, V1beta2, CoreV1, DiscoveryV1, RbacV1, ...
_PREFIX_RE = re.compile(r"^(?:[A-Z][a-z]+)?V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])")
_LIST_RE = re.compile(r"^(?:List|list)\[(.*)\]$")
_DICT_RE = re.compile(r"^(?:Dict\[|dict\()str, (.*)[\])]$")


@dataclass
class FieldSpec:
    name: str  # python attribute in the output
    json_name: str
    annotation: str  # without "| None"


@dataclass
class ClassSpec:
    client_name: str
    name: str
    doc: str
    fields: list[FieldSpec]
    note: str = ""


def client_models() -> Any:
    """The client's models module (imported dynamically: it is large and only a dev dependency)."""
    return importlib.import_module("kubernetes.client.models")


def referenced_models(type_string: str) -> list[str]:
    """Client model class names appearing in a type string such as 'List[V1Container]'."""
    inner = type_string
    while True:
        if m := _LIST_RE.match(inner):
            inner = m.group(1)
        elif m := _DICT_RE.match(inner):
            inner = m.group(1)
        else:
            break
    return [] if inner in SCALARS else [inner]


def closure(models: Any, roots: list[str]) -> list[str]:
    """Client class names reachable from roots, dependencies before dependants (DFS post-order)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            return  # a cycle: the class is emitted once, model_rebuild() resolves the rest
        state[name] = "active"
        cls = getattr(models, name)
        for type_string in cls.openapi_types.values():
            for ref in referenced_models(type_string):
                if not hasattr(models, ref):
                    raise SystemExit(f"{name}: unknown type {type_string!r}")
                visit(ref)
        state[name] = "done"
        order.append(name)

    for root in roots:
        visit(root)
    return order


def strip_prefix(client_name: str) -> str:
    return _PREFIX_RE.sub("", client_name, count=1)


def class_names(client_names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Output class name per client class, and a note for each one that kept its prefix."""
    by_short: dict[str, list[str]] = {}
    for client_name in client_names:
        by_short.setdefault(strip_prefix(client_name), []).append(client_name)
    names: dict[str, str] = {}
    notes: dict[str, str] = {}
    for short, owners in by_short.items():
        if len(owners) == 1 and short not in RESERVED_MODULE_NAMES:
            names[owners[0]] = short
            continue
        for owner in owners:
            names[owner] = owner
            others = ", ".join(o for o in owners if o != owner) or "a module-level name"
            notes[owner] = f"Keeps the client's prefix: {short!r} also names {others}."
    if len(set(names.values())) != len(names):
        raise SystemExit(f"class name collision after disambiguation: {sorted(names.values())}")
    return names, notes


def python_name(client_attr: str) -> str:
    name = client_attr.lstrip("_")  # the client spells exec / continue as _exec / _continue
    if (
        keyword.iskeyword(name)
        or hasattr(BaseModel, name)
        or name.startswith("model_")
        or name in SHADOWING_FIELD_NAMES
    ):
        name += "_"
    return name


def annotation(type_string: str, names: dict[str, str]) -> str:
    if m := _LIST_RE.match(type_string):
        return f"list[{annotation(m.group(1), names)}]"
    if m := _DICT_RE.match(type_string):
        return f"dict[str, {annotation(m.group(1), names)}]"
    if type_string in SCALARS:
        return SCALARS[type_string]
    return names[type_string]


def field_annotation(client_name: str, json_name: str, type_string: str, names: dict[str, str]) -> str:
    key = (client_name, json_name)
    if type_string == "object":
        if key in INT_OR_STRING_FIELDS:
            return "IntOrString"
        if key in ANY_FIELDS:
            return "Any"
        raise SystemExit(
            f"{client_name}.{json_name} is typed 'object': add it to INT_OR_STRING_FIELDS or ANY_FIELDS"
        )
    if key in QUANTITY_SCALAR_FIELDS:
        if type_string != "str":
            raise SystemExit(f"{client_name}.{json_name}: expected 'str' for a Quantity, got {type_string!r}")
        return "Quantity"
    if json_name in QUANTITY_MAP_FIELDS and _DICT_RE.match(type_string):
        if annotation(type_string, names) != "dict[str, StrictStr]":
            raise SystemExit(f"{client_name}.{json_name}: expected a ResourceList, got {type_string!r}")
        return "dict[str, Quantity]"
    return annotation(type_string, names)


def class_doc(cls: Any) -> str:
    doc = (cls.__doc__ or "").split("Attributes:")[0]
    return " ".join(doc.split())


def build_specs(models: Any) -> list[ClassSpec]:
    client_names = closure(models, [c for _, _, c in ROOT_KINDS] + EXTRA_ROOTS)
    names, notes = class_names(client_names)
    used_keys: set[tuple[str, str]] = set()
    specs: list[ClassSpec] = []
    for client_name in client_names:
        cls = getattr(models, client_name)
        fields: list[FieldSpec] = []
        seen_names: set[str] = set()
        for attr, type_string in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            used_keys.add((client_name, json_name))
            name = python_name(attr)
            if name in seen_names:
                raise SystemExit(f"{client_name}: two fields map to python name {name!r}")
            seen_names.add(name)
            fields.append(
                FieldSpec(name, json_name, field_annotation(client_name, json_name, type_string, names))
            )
        specs.append(
            ClassSpec(client_name, names[client_name], class_doc(cls), fields, notes.get(client_name, ""))
        )
    # Every special case must still exist (else the client renamed it and we silently lost it),
    # except the IntOrString fields of types outside the closure.
    in_closure = set(client_names)
    for key in QUANTITY_SCALAR_FIELDS | INT_OR_STRING_FIELDS | ANY_FIELDS:
        if key[0] in in_closure and key not in used_keys:
            raise SystemExit(f"special-cased field {key} does not exist in the client")
    return specs


def docstring(text: str, indent: str) -> list[str]:
    if not text:
        return []
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += " "
    if len(indent) + len(text) + 6 <= 110:
        return [f'{indent}"""{text}"""']
    wrapped = textwrap.wrap(
        text,
        width=100,
        initial_indent=f'{indent}"""',
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [*wrapped, f'{indent}"""']


def render_field(f: FieldSpec) -> str:
    typ = "Any" if f.annotation == "Any" else f"{f.annotation} | None"
    if f.name == f.json_name:
        return f"    {f.name}: {typ} = None"
    line = f'    {f.name}: {typ} = Field(default=None, alias="{f.json_name}")'
    if len(line) <= 110:  # the project's line length; wrap as ruff format would
        return line
    return f'    {f.name}: {typ} = Field(\n        default=None, alias="{f.json_name}"\n    )'


def render(specs: list[ClassSpec], client_version: str) -> str:
    by_client = {s.client_name: s for s in specs}
    cyclic = _cyclic(specs)
    out: list[str] = [
        "# GENERATED by tools/gen_models.py; DO NOT EDIT. Regenerate: .venv/bin/python tools/gen_models.py",
        f"# Source: the kubernetes Python client {client_version} (openapi_types / attribute_map).",
        '"""Kubernetes API types as strict pydantic v2 models (core, apps, batch, rbac, ... v1).',
        "",
        "Every field is optional: required fields are checked by the validation module with",
        "Kubernetes' messages. Unknown fields are rejected (extra='forbid'); scalars are strict.",
        "Python attribute names are snake_case; JSON names (the aliases) are Kubernetes' camelCase.",
        "By default both are accepted on input; pass ``by_name=False`` to ``model_validate`` to",
        "accept only the JSON names, as the Kubernetes apiserver does.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, TypeAlias",
        "",
        "from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr",
        "",
        "# resource.Quantity: '500m', '64Mi', or a bare number (cpu: 1).",
        "Quantity: TypeAlias = StrictStr | StrictInt | StrictFloat",
        "# intstr.IntOrString: a port number or name, a count or percentage.",
        "IntOrString: TypeAlias = StrictInt | StrictStr",
        "",
        "",
        "class K8sModel(BaseModel):",
        '    """Base of every generated type: strict, closed, serialised by JSON name."""',
        "",
        "    model_config = ConfigDict(",
        '        extra="forbid",',
        "        validate_by_name=True,  # with validate_by_alias: pydantic >= 2.11's populate_by_name",
        "        validate_by_alias=True,",
        "        serialize_by_alias=True,",
        "    )",
    ]
    for spec in specs:
        out += ["", ""]
        if spec.note:
            out.append(f"# {spec.note}")
        out.append(f"class {spec.name}(K8sModel):")
        out += docstring(spec.doc, "    ")
        if spec.fields:
            if spec.doc:
                out.append("")
            out += [render_field(f) for f in spec.fields]
        elif not spec.doc:
            out.append("    pass")
    # Forward references inside cycles (none today) need an explicit rebuild.
    out += ["", ""]
    rebuilds = [f"{spec.name}.model_rebuild()" for spec in specs if spec.client_name in cyclic]
    if rebuilds:
        out += ["# These reference classes defined after them (cycles in the type graph).", *rebuilds, ""]
    out += ["KINDS: dict[tuple[str, str], type[K8sModel]] = {"]
    for api_version, kind, client_name in ROOT_KINDS:
        out.append(f'    ("{api_version}", "{kind}"): {by_client[client_name].name},')
    out += ["}", ""]
    return "\n".join(out)


def _cyclic(specs: list[ClassSpec]) -> set[str]:
    """Client names of classes that reference a class defined after them."""
    names_to_client = {s.name: s.client_name for s in specs}
    position = {s.client_name: i for i, s in enumerate(specs)}
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    late: set[str] = set()
    for spec in specs:
        for f in spec.fields:
            for word in ident.findall(f.annotation):
                ref = names_to_client.get(word)
                if ref is not None and position[ref] >= position[spec.client_name]:
                    late.add(spec.client_name)
    return late


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the output file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    version: str = importlib.import_module("kubernetes").__version__
    specs = build_specs(client_models())
    text = render(specs, version)
    output: Path = args.output
    if args.check:
        if not output.exists() or output.read_text() != text:
            print(f"{output} is stale: run tools/gen_models.py", file=sys.stderr)
            return 1
        return 0
    output.write_text(text)
    print(f"wrote {output}: {len(specs)} classes, {len(ROOT_KINDS)} kinds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

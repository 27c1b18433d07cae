"""Schema checks of request bodies against the Kubernetes types (shared.api.models).

Kubernetes decodes a body into its Go types: a field of the wrong type is a 400, and a field the
type does not define is rejected under `fieldValidation=Strict`, dropped with a warning under
`Warn` (the default) and dropped silently under `Ignore`. Fields the types define are kept as
given, whether or not kubenats acts on them.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.api.models import KINDS
from shared.errors import ApiError, bad_request


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _drop(obj: Any, loc: tuple[int | str, ...]) -> None:
    cur = obj
    for part in loc[:-1]:
        cur = cur[part]
    if isinstance(cur, dict):
        cur.pop(loc[-1], None)


def check(api_version: str, kind: str, obj: dict[str, Any], mode: str) -> list[str]:
    """Check obj in place; returns warnings. Raises 400 for type errors or (Strict) unknown fields."""
    model = KINDS.get((api_version, kind))
    if model is None:
        return []
    warnings: list[str] = []
    for _ in range(3):
        try:
            model.model_validate(obj, by_name=False)
            return warnings
        except ValidationError as e:
            unknown = [err for err in e.errors() if err["type"] == "extra_forbidden"]
            other = [err for err in e.errors() if err["type"] != "extra_forbidden"]
            if other:
                first = other[0]
                raise bad_request(
                    f"{kind} in version \"{api_version.rpartition('/')[2]}\" cannot be handled as a {kind}: "
                    f"{_path(first['loc'])}: {first['msg']}"
                ) from None
            paths = [_path(err["loc"]) for err in unknown]
            if mode == "Strict":
                fields = ", ".join(f'unknown field "{p}"' for p in paths)
                raise ApiError(400, "BadRequest", f"{kind} in version \"{api_version.rpartition('/')[2]}\" "
                               f"cannot be handled as a {kind}: strict decoding error: {fields}") from None
            for err in sorted(unknown, key=lambda x: len(x["loc"]), reverse=True):
                _drop(obj, err["loc"])
            if mode != "Ignore":
                warnings.extend(f'unknown field "{p}"' for p in paths)
    return warnings

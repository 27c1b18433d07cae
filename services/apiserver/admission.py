"""Admission: checks that need the object itself, run where `Objects` has old and new in hand.

Authorization decides on the request's attributes (verb, resource, name); some rules need the
body or the stored object: a kubelet may only update pods bound to its own node, create mirror
pods for itself, and touch its own Node and Lease (Kubernetes' NodeRestriction plugin). The
security middleware installs the checker for the caller of the current request in a context
variable; `Objects` calls `check` just before it writes, with the object as it will be stored
and as it was. Internal writes (bootstrap, tests of `Objects`) run without a checker.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.api.resources import Resource
from shared.errors import ApiError


@dataclass(frozen=True)
class Request:
    verb: str  # create, update, delete (patch arrives as update, as in Kubernetes admission)
    resource: Resource
    subresource: str
    namespace: str
    name: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None


Checker = Callable[[Request], None]

_current: contextvars.ContextVar[Checker | None] = contextvars.ContextVar("kubenats_admission", default=None)


def install(checker: Checker | None) -> contextvars.Token[Checker | None]:
    return _current.set(checker)


def reset(token: contextvars.Token[Checker | None]) -> None:
    _current.reset(token)


def check(verb: str, resource: Resource, subresource: str, namespace: str, name: str,
          obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
    """Raise the checker's ApiError (403 Forbidden) when the current caller may not write this."""
    checker = _current.get()
    if checker is not None:
        checker(Request(verb, resource, subresource, namespace, name, obj, old))


def forbidden(resource: Resource, name: str, message: str) -> ApiError:
    qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    prefix = f'{qualified} "{name}"' if name else qualified
    return ApiError(403, "Forbidden", f"{prefix} is forbidden: {message}",
                    name=name, group=resource.group, kind=resource.plural)

"""Kubernetes `Status` errors.

Clients (kubectl, client-go, the Python client) decide what to do from the Status body: its
`reason`, `code` and `details`. Every failure the API returns is built here, so the shape and
the wording match the real API server everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ApiError(Exception):
    """An error that becomes a Kubernetes Status response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: Iterable[dict[str, str]] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = list(causes)
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def not_found(kind_plural: str, name: str, group: str = "") -> ApiError:
    res = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(404, "NotFound", f'{res} "{name}" not found', name=name, group=group, kind=kind_plural)


def already_exists(kind_plural: str, name: str, group: str = "") -> ApiError:
    res = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(
        409, "AlreadyExists", f'{res} "{name}" already exists', name=name, group=group, kind=kind_plural
    )


def conflict(kind_plural: str, name: str, group: str = "", detail: str = "") -> ApiError:
    res = f"{kind_plural}.{group}" if group else kind_plural
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res} "{name}": {detail}',
        name=name,
        group=group,
        kind=kind_plural,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> ApiError:
    """422 Invalid, worded as the API server: `Pod "x" is invalid: spec.containers[0].image: Required value`."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422, "Invalid", f'{kind} "{name}" is invalid: {joined}', name=name, group=group, kind=kind, causes=causes
    )


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)

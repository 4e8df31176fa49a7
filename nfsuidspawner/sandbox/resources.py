"""What the sandbox API server serves: its kinds, what a request URL names, and its errors.

The vocabulary the API server's rooms share (storage and watch, RBAC, validation, HTTP routes):
the core/v1 kinds it knows, the :class:`Target` of a request under /api/v1, and
:class:`ApiError`, which the routes answer as a Kubernetes ``Status`` object. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Obj = dict[str, Any]

# plural -> (kind, namespaced)
RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "events": ("Event", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "secrets": ("Secret", True),
    "services": ("Service", True),
    "configmaps": ("ConfigMap", True),
    "persistentvolumes": ("PersistentVolume", False),
    "namespaces": ("Namespace", False),
}


@dataclass(frozen=True)
class Target:
    """What a request URL under /api/v1 names."""

    plural: str
    namespace: str  # "" for cluster-scoped kinds and for lists across all namespaces
    name: str = ""
    subresource: str = ""

    @property
    def kind(self) -> str:
        return RESOURCES[self.plural][0]

    @property
    def namespaced(self) -> bool:
        return RESOURCES[self.plural][1]


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        if details is not None:
            self.status["details"] = details


def not_found(plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, field: str, message: str) -> ApiError:
    cause = {"reason": "FieldValueInvalid", "message": message, "field": field}
    where = f"{field}: " if field else ""
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {where}{message}',
        {"name": name, "kind": kind, "causes": [cause]},
    )


def as_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{name}: invalid integer {value!r}") from None


def now(offset_seconds: int = 0) -> str:
    t = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")

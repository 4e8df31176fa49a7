"""A small in-process Kubernetes API server (core/v1 only) for the sandbox.

It serves what KubeSpawner, kubernetes_asyncio and the sandbox kubelet use over plain HTTP on
loopback: get, list, watch (with a resourceVersion history), create, replace and delete of a few
core kinds, bearer-token RBAC modelled on the Zero-to-JupyterHub hub Role, strict schema
validation with kubernetes-validate, and pod graceful deletion that waits for a kubelet.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import ipaddress
import json
import logging
import os
import random
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
from aiohttp import web

__all__ = ["ApiServer"]

log = logging.getLogger(__name__)

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

# What the API server puts into .status on create; the client's status is discarded.
INITIAL_STATUS: dict[str, Obj] = {
    "pods": {"phase": "Pending"},
    "persistentvolumeclaims": {"phase": "Pending"},
    "persistentvolumes": {"phase": "Pending"},
    "services": {"loadBalancer": {}},
    "namespaces": {"phase": "Active"},
}

# Kinds whose DELETE answers with the deleted object rather than a Status.
RETURNS_DELETED_OBJECT = {"pods", "persistentvolumeclaims", "services", "persistentvolumes"}

# The hub Role of Zero-to-JupyterHub 4.4.0 (templates/hub/rbac.yaml).
HUB_ROLE_RULES: list[Obj] = [
    {
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"resources": ["events"], "verbs": ["get", "watch", "list"]},
]

SERVER_OWNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL)
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
GENERATE_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
PARSE_BOOL_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
IDENTITY = web.RequestKey("identity", str)


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


# --- selectors -------------------------------------------------------------------------------

Requirement = Callable[[Obj], bool]


def _split_outside_parens(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SET_REQUIREMENT = re.compile(r"^(\S+)\s+(in|notin)\s+\((.*)\)$")
_KEY = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*$")


def labels(obj: Obj) -> Obj:
    return obj.get("metadata", {}).get("labels") or {}


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` into predicates on an object's labels."""
    requirements: list[Requirement] = []
    for part in _split_outside_parens(text):
        if m := _SET_REQUIREMENT.match(part):
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                requirements.append(lambda o, k=key, vs=values: labels(o).get(k) in vs)
            else:
                requirements.append(lambda o, k=key, vs=values: labels(o).get(k) not in vs)
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = (s.strip() for s in part.partition(op))
                if not _KEY.match(key) or not LABEL_VALUE.fullmatch(value):
                    raise bad_request(f"unable to parse requirement: {part!r}")
                if op == "!=":
                    requirements.append(lambda o, k=key, v=value: labels(o).get(k) != v)
                else:
                    requirements.append(lambda o, k=key, v=value: labels(o).get(k) == v)
                break
        else:
            negate = part.startswith("!")
            key = part[1:].strip() if negate else part
            if not _KEY.match(key):
                raise bad_request(f"unable to parse requirement: {part!r}")
            requirements.append(lambda o, k=key, n=negate: (k in labels(o)) != n)
    return requirements


def field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str) -> list[Requirement]:
    """Parse `metadata.name=x,status.phase!=Running` (any dotted path; = == !=)."""
    requirements: list[Requirement] = []
    for part in _split_outside_parens(text):
        for op in ("!=", "==", "="):
            if op in part:
                path, _, value = (s.strip() for s in part.partition(op))
                if not path:
                    raise bad_request(f"invalid selector: {part!r}")
                if op == "!=":
                    requirements.append(lambda o, p=path, v=value: field_value(o, p) != v)
                else:
                    requirements.append(lambda o, p=path, v=value: field_value(o, p) == v)
                break
        else:
            raise bad_request(f"invalid selector: {part!r}")
    return requirements


# --- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One write, as kept in the watch history."""

    resource_version: int
    plural: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None


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


class ApiServer:
    """An exact-enough core/v1 Kubernetes API server for one process's tests and sandbox.

    tokens maps bearer tokens to identities: "admin" may do anything; "hub" is the
    ServiceAccount `system:serviceaccount:<hub_namespace>:hub` bound to the z2jh hub Role in
    hub_namespace plus hub_cluster_rules cluster-wide (unless enforce_hub_role is False);
    any other identity has no permissions.

    With graceful_pod_deletion (for when a kubelet runs), deleting a pod with a grace period
    only sets metadata.deletionTimestamp; the pod goes once a delete with gracePeriodSeconds=0
    arrives, which the kubelet sends when the containers are dead.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, str],
        namespaces: Iterable[str] = ("default",),
        hub_namespace: str = "default",
        enforce_hub_role: bool = True,
        hub_cluster_rules: Sequence[Mapping[str, Sequence[str]]] = (),
        graceful_pod_deletion: bool = False,
        kubernetes_version: str = "1.37",
        history_limit: int = 1000,
    ) -> None:
        self.tokens = dict(tokens)
        self.hub_namespace = hub_namespace
        self.enforce_hub_role = enforce_hub_role
        self.hub_cluster_rules = [dict(r) for r in hub_cluster_rules]
        self.graceful_pod_deletion = graceful_pod_deletion
        self.kubernetes_version = kubernetes_version
        self.url = ""
        self._store: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in RESOURCES}
        self._resource_version = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._compacted = 0  # every change after this resourceVersion is in _history
        self._watchers: set[asyncio.Queue[Change | None]] = set()
        self._runner: web.AppRunner | None = None
        for name in namespaces:
            meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name}}
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
            self._insert("namespaces", "", namespace)

    # --- lifecycle ---

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (loopback only) and return the base URL."""
        if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"ApiServer binds only to 127.0.0.0/8, not {host}")
        app = web.Application(middlewares=[self._status_middleware])
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/api/v1", self._api_resources)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_route("*", "/api/v1/{tail:.+}", self._resource)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """End every watch stream and stop listening."""
        for queue in list(self._watchers):
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str, namespace: str) -> None:
        """Write a kubeconfig for this server (JSON, which is YAML) readable only by its owner."""
        if not self.url:
            raise RuntimeError("start() the ApiServer before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace},
                }
            ],
            "current-context": "sandbox",
            "preferences": {},
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)

    def objects(self, plural: str) -> list[Obj]:
        """A copy of the stored objects of one resource (e.g. "pods"), for test assertions."""
        return [copy.deepcopy(o) for _, o in sorted(self._store[plural].items())]

    # --- storage and history ---

    def _commit(self, plural: str, namespace: str, type_: str, obj: Obj, old: Obj | None) -> None:
        change = Change(self._resource_version, plural, namespace, type_, obj, old)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().resource_version
        for queue in self._watchers:
            queue.put_nowait(change)

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _insert(self, plural: str, namespace: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["resourceVersion"] = self._next_resource_version()
        self._store[plural][(namespace, meta["name"])] = obj
        self._commit(plural, namespace, "ADDED", obj, None)
        return obj

    def _replace(self, plural: str, namespace: str, obj: Obj, old: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._store[plural][(namespace, obj["metadata"]["name"])] = obj
        self._commit(plural, namespace, "MODIFIED", obj, old)
        return obj

    def _remove(self, plural: str, namespace: str, name: str) -> Obj:
        old = self._store[plural].pop((namespace, name))
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(plural, namespace, "DELETED", obj, old)
        return obj

    def _get(self, target: Target) -> Obj:
        obj = self._store[target.plural].get((target.namespace, target.name))
        if obj is None:
            raise not_found(target.plural, target.name)
        return obj

    # --- HTTP plumbing ---

    @web.middleware
    async def _status_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            self._authenticate(request)
            return await handler(request)
        except ApiError as e:
            return web.json_response(e.status, status=e.status["code"])
        except web.HTTPNotFound:
            e = ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.json_response(e.status, status=404)

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        identity = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        request[IDENTITY] = identity

    def _user(self, identity: str) -> str:
        if identity == "hub":
            return f"system:serviceaccount:{self.hub_namespace}:hub"
        return identity

    def _authorize(self, identity: str, verb: str, target: Target) -> None:
        if identity == "admin" or (identity == "hub" and not self.enforce_hub_role):
            return
        resource = f"{target.plural}/{target.subresource}" if target.subresource else target.plural
        if identity == "hub":
            rules = list(self.hub_cluster_rules)
            if target.namespace == self.hub_namespace and target.namespaced:
                rules += HUB_ROLE_RULES
            for rule in rules:
                resources, verbs = rule.get("resources", ()), rule.get("verbs", ())
                if (resource in resources or "*" in resources) and (verb in verbs or "*" in verbs):
                    return
        what = f'{target.plural} "{target.name}"' if target.name else target.plural
        scope = (
            f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
        )
        message = (
            f'{what} is forbidden: User "{self._user(identity)}" cannot {verb} resource '
            f'"{resource}" in API group "" {scope}'
        )
        details: Obj = {"kind": target.plural}
        if target.name:
            details["name"] = target.name
        raise ApiError(403, "Forbidden", message, details)

    @staticmethod
    def _parse_target(tail: str) -> Target:
        parts = tail.strip("/").split("/")
        not_there = ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) >= 3 and parts[0] == "namespaces":
            namespace, plural, rest = parts[1], parts[2], parts[3:]
            if plural not in RESOURCES or not RESOURCES[plural][1] or len(rest) > 2:
                raise not_there
            target = Target(plural, namespace, *rest)
        else:
            plural, rest = parts[0], parts[1:]
            if plural not in RESOURCES or len(rest) > 2:
                raise not_there
            if RESOURCES[plural][1] and rest:  # namespaced kinds: only a list across namespaces
                raise not_there
            target = Target(plural, "", *rest)
        if target.subresource and (target.plural, target.subresource) != ("pods", "status"):
            raise not_there
        return target

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        target = self._parse_target(request.match_info["tail"])
        watch = request.query.get("watch", "") in PARSE_BOOL_TRUE
        if request.method == "GET":
            verb = "get" if target.name else ("watch" if watch else "list")
        elif request.method == "POST" and not target.name:
            verb = "create"
        elif request.method == "PUT" and target.name:
            verb = "update"
        elif request.method == "DELETE" and target.name and not target.subresource:
            verb = "delete"
        else:
            verb = ""
        across_namespaces = target.namespaced and not target.namespace
        if not verb or (across_namespaces and verb not in ("list", "watch")):
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        self._authorize(request[IDENTITY], verb, target)
        if verb == "get":
            return web.json_response(self._get(target))
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "create":
            return await self._create(request, target)
        if verb == "update":
            return await self._update(request, target)
        return await self._delete(request, target)

    async def _body(self, request: web.Request, optional: bool = False) -> Obj:
        text = await request.text()
        if optional and not text.strip():
            return {}
        try:
            body = json.loads(text)
        except ValueError as e:
            raise bad_request(f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise bad_request("the request body is not a JSON object")
        return body

    # --- discovery ---

    async def _version(self, request: web.Request) -> web.Response:
        major, minor = self.kubernetes_version.split(".")[:2]
        return web.json_response(
            {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{major}.{minor}.0",
                "platform": "linux/amd64",
            }
        )

    async def _api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}
                ],
            }
        )

    async def _api_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def _api_resources(self, request: web.Request) -> web.Response:
        resources = []
        for plural, (kind, namespaced) in RESOURCES.items():
            resources.append(
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": ["create", "delete", "get", "list", "update", "watch"],
                }
            )
        resources.append(
            {
                "name": "pods/status",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "update"],
            }
        )
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "v1",
                "resources": resources,
            }
        )

    # --- read ---

    @staticmethod
    def _selector(request: web.Request) -> Callable[[Obj], bool]:
        requirements = parse_label_selector(request.query.get("labelSelector", ""))
        requirements += parse_field_selector(request.query.get("fieldSelector", ""))
        return lambda obj: all(r(obj) for r in requirements)

    def _matching(self, target: Target, matches: Callable[[Obj], bool]) -> list[Obj]:
        return [
            obj
            for (namespace, _), obj in sorted(self._store[target.plural].items())
            if (not target.namespace or namespace == target.namespace) and matches(obj)
        ]

    def _list(self, request: web.Request, target: Target) -> web.Response:
        # Lists always answer the newest state, which is what NotOlderThan allows.
        match = request.query.get("resourceVersionMatch", "NotOlderThan")
        if match != "NotOlderThan":
            raise ApiError(422, "Invalid", f"resourceVersionMatch: Unsupported value: {match!r}")
        items = [
            {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            for obj in self._matching(target, self._selector(request))
        ]
        return web.json_response(
            {
                "kind": f"{target.kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }
        )

    def _as_seen_by(
        self, change: Change, target: Target, matches: Callable[[Obj], bool]
    ) -> Obj | None:
        """The watch event one watcher gets for a change, or None.

        Like the real watch cache, an object that starts or stops matching the selectors
        arrives as ADDED or DELETED.
        """
        if change.plural != target.plural:
            return None
        if target.namespace and change.namespace != target.namespace:
            return None
        now_matches = matches(change.obj)
        was_matching = change.old is not None and matches(change.old)
        if change.type == "MODIFIED":
            if now_matches and was_matching:
                type_ = "MODIFIED"
            elif now_matches:
                type_ = "ADDED"
            elif was_matching:
                type_ = "DELETED"
            else:
                return None
        elif change.type == "ADDED" and now_matches:
            type_ = "ADDED"
        elif change.type == "DELETED" and (was_matching or now_matches):
            type_ = "DELETED"
        else:
            return None
        return {"type": type_, "object": change.obj}

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        matches = self._selector(request)
        since = request.query.get("resourceVersion", "")
        timeout = as_int("timeoutSeconds", request.query.get("timeoutSeconds"))
        backlog: list[Obj] = []
        if since in ("", "0"):
            backlog = [{"type": "ADDED", "object": obj} for obj in self._matching(target, matches)]
        elif not since.isdigit():
            raise bad_request(f"invalid resource version: {since!r}")
        elif int(since) < self._compacted:
            status = ApiError(
                410, "Expired", f"too old resource version: {since} ({self._compacted + 1})"
            ).status
            backlog = [{"type": "ERROR", "object": status}]
        else:
            for change in self._history:
                if change.resource_version > int(since):
                    event = self._as_seen_by(change, target, matches)
                    if event is not None:
                        backlog.append(event)
        # Registered in the same step as the backlog was read, so no change falls in between.
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            if backlog and backlog[0]["type"] == "ERROR":
                return response
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    change = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if change is None:
                    break
                event = self._as_seen_by(change, target, matches)
                if event is not None:
                    await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
            return response
        finally:
            self._watchers.discard(queue)

    # --- write ---

    async def _validated(self, request: web.Request, target: Target) -> Obj:
        """The request body, checked like the real server's strict decoding and validation."""
        obj = await self._body(request)
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", target.kind)
        if obj["apiVersion"] != "v1" or obj["kind"] != target.kind:
            raise bad_request(
                f"the object's apiVersion/kind ({obj['apiVersion']}/{obj['kind']}) "
                f"does not match the request (v1/{target.kind})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if not target.namespaced:
            meta.pop("namespace", None)
        elif meta.setdefault("namespace", target.namespace) != target.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if target.name and meta.get("name") != target.name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({target.name})"
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(GENERATE_NAME_CHARS, k=5))
        name = meta.get("name", "")
        try:
            await asyncio.to_thread(
                kubernetes_validate.validate, obj, self.kubernetes_version, strict=True
            )
        except kubernetes_validate.ValidationError as e:
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path).lstrip(".")
            raise invalid(target.kind, name, field, e.message) from None
        self._check_metadata(target, meta)
        return obj

    @staticmethod
    def _check_metadata(target: Target, meta: Obj) -> None:
        name = meta.get("name", "")
        if not name:
            raise invalid(
                target.kind, "", "metadata.name", "Required value: name or generateName is required"
            )
        if target.plural in ("namespaces", "services"):
            pattern, max_len, what = DNS1123_LABEL, 63, "RFC 1123 label"
        else:
            pattern, max_len, what = DNS1123_SUBDOMAIN, 253, "RFC 1123 subdomain"
        if len(name) > max_len or not pattern.fullmatch(name):
            raise invalid(
                target.kind,
                name,
                "metadata.name",
                f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                f"character (at most {max_len} characters)",
            )
        for key, value in (meta.get("labels") or {}).items():
            prefix, _, label_name = key.rpartition("/")
            if (
                len(label_name) > 63
                or not QUALIFIED_NAME.fullmatch(label_name)
                or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)))
            ):
                message = f'Invalid value: "{key}": not a qualified name'
                raise invalid(target.kind, name, "metadata.labels", message)
            if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
                message = f'Invalid value: "{value}": not a valid label value'
                raise invalid(target.kind, name, f"metadata.labels[{key}]", message)

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        obj = await self._validated(request, target)
        # From here on no awaits: the checks and the write happen in one step.
        if target.namespaced and ("", target.namespace) not in self._store["namespaces"]:
            raise not_found("namespaces", target.namespace)
        name = obj["metadata"]["name"]
        if (target.namespace, name) in self._store[target.plural]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{target.plural} "{name}" already exists',
                {"name": name, "kind": target.plural},
            )
        for key in SERVER_OWNED_METADATA:
            obj["metadata"].pop(key, None)
        if target.plural in INITIAL_STATUS:
            obj["status"] = copy.deepcopy(INITIAL_STATUS[target.plural])
        if target.plural == "events":
            obj.setdefault("lastTimestamp", None)
            obj.setdefault("eventTime", None)
        if target.plural == "secrets" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(value.encode()).decode()
        if request.query.get("dryRun") == "All":  # validated and admitted, never stored
            return web.json_response(obj, status=201)
        return web.json_response(self._insert(target.plural, target.namespace, obj), status=201)

    async def _update(self, request: web.Request, target: Target) -> web.Response:
        body = await self._validated(request, target)
        old = self._get(target)
        wanted = body["metadata"].get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {target.plural} "{target.name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                {"name": target.name, "kind": target.plural},
            )
        if target.subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = body.get("status", {})
        else:
            new = body
            for key in SERVER_OWNED_METADATA:
                if key in old["metadata"]:
                    new["metadata"][key] = old["metadata"][key]
                else:
                    new["metadata"].pop(key, None)
            if "status" in old:
                new["status"] = old["status"]
        if new == old:
            return web.json_response(old)
        return web.json_response(self._replace(target.plural, target.namespace, new, old))

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        options = await self._body(request, optional=True)
        grace = as_int(
            "gracePeriodSeconds",
            request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds")),
        )
        obj = self._get(target)
        if target.plural == "pods" and self.graceful_pod_deletion:
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            if grace > 0:
                return web.json_response(self._mark_deleted(target, obj, grace))
        if target.plural == "namespaces":
            for plural, objects in self._store.items():
                for namespace, name in [k for k in objects if k[0] == target.name]:
                    self._remove(plural, namespace, name)
        removed = self._remove(target.plural, target.namespace, target.name)
        if target.plural in RETURNS_DELETED_OBJECT:
            return web.json_response(removed)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": target.name,
                    "kind": target.plural,
                    "uid": removed["metadata"]["uid"],
                },
            }
        )

    def _mark_deleted(self, target: Target, obj: Obj, grace: int) -> Obj:
        """Start a pod's graceful deletion; the kubelet finishes it with gracePeriodSeconds=0."""
        current = obj["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return obj
        new = copy.deepcopy(obj)
        new["metadata"]["deletionTimestamp"] = now(grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        return self._replace(target.plural, target.namespace, new, obj)

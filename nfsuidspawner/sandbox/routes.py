"""The sandbox API server's HTTP routes: discovery, and get, list, watch, create, update, delete.

Each request under /api/v1 is parsed into a :class:`~.resources.Target`, authenticated and
authorized (:mod:`.rbac`), its body checked (:mod:`.validation`), and then read from or written
to the :class:`~.storage.Store`, unless a test's fault rule (:mod:`.faults`) says otherwise. A
pod delete with a grace period, while a kubelet runs, only marks the pod
(metadata.deletionTimestamp); the kubelet finishes it with gracePeriodSeconds=0. Errors are
answered as Kubernetes ``Status`` objects.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import validation
from .matching import selector
from .rbac import IDENTITY
from .resources import RESOURCES, ApiError, Obj, Target, as_int, bad_request, not_found, now

if TYPE_CHECKING:
    from .apiserver import ApiServer

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

SERVER_OWNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

PARSE_BOOL_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


def parse_target(tail: str) -> Target:
    """The Target of a path under /api/v1/ (404 for anything this server does not serve)."""
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


async def read_body(request: web.Request, optional: bool = False) -> Obj:
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


class Routes:
    """The aiohttp application of one ApiServer."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.store = server.store

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._status_middleware])
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/api/v1", self._api_resources)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_route("*", "/api/v1/{tail:.+}", self._resource)
        self.server.faults.add_routes(app)  # the admin's fault switch, /sandbox/...
        return app

    @web.middleware
    async def _status_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            self.server.rbac.authenticate(request)
            return await handler(request)
        except ApiError as e:
            return web.json_response(e.status, status=e.status["code"])
        except web.HTTPNotFound:
            e = ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.json_response(e.status, status=404)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        target = parse_target(request.match_info["tail"])
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
        self.server.rbac.authorize(request[IDENTITY], verb, target)
        return await self.server.faults.apply(
            request, verb, target, lambda: self._carry_out(request, verb, target)
        )

    async def _carry_out(
        self, request: web.Request, verb: str, target: Target
    ) -> web.StreamResponse:
        if verb == "get":
            return web.json_response(self.store.get(target))
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "create":
            return await self._create(request, target)
        if verb == "update":
            return await self._update(request, target)
        return await self._delete(request, target)

    # --- discovery ---

    async def _version(self, request: web.Request) -> web.Response:
        major, minor = self.server.kubernetes_version.split(".")[:2]
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
                    {
                        "clientCIDR": "0.0.0.0/0",
                        "serverAddress": self.server.url.removeprefix("http://"),
                    }
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
        return selector(
            request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
        )

    def _list(self, request: web.Request, target: Target) -> web.Response:
        # Lists always answer the newest state, which is what NotOlderThan allows.
        match = request.query.get("resourceVersionMatch", "NotOlderThan")
        if match != "NotOlderThan":
            raise ApiError(422, "Invalid", f"resourceVersionMatch: Unsupported value: {match!r}")
        items = [
            {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            for obj in self.store.matching(target, self._selector(request))
        ]
        return web.json_response(
            {
                "kind": f"{target.kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        matches = self._selector(request)
        since = request.query.get("resourceVersion", "")
        timeout = as_int("timeoutSeconds", request.query.get("timeoutSeconds"))
        return await self.store.watch(request, target, matches, since, timeout)

    # --- write ---

    async def _validated(self, request: web.Request, target: Target) -> Obj:
        body = await read_body(request)
        return await validation.validated(body, target, self.server.kubernetes_version)

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        obj = await self._validated(request, target)
        # From here on no awaits: the checks and the write happen in one step.
        if target.namespaced and ("", target.namespace) not in self.store.objects["namespaces"]:
            raise not_found("namespaces", target.namespace)
        name = obj["metadata"]["name"]
        if (target.namespace, name) in self.store.objects[target.plural]:
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
        return web.json_response(
            self.store.insert(target.plural, target.namespace, obj), status=201
        )

    async def _update(self, request: web.Request, target: Target) -> web.Response:
        body = await self._validated(request, target)
        old = self.store.get(target)
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
            # Stored objects are never changed in place: the new one may share the old's parts.
            new = {**old, "metadata": dict(old["metadata"]), "status": body.get("status", {})}
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
        return web.json_response(self.store.replace(target.plural, target.namespace, new, old))

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        options = await read_body(request, optional=True)
        grace = as_int(
            "gracePeriodSeconds",
            request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds")),
        )
        obj = self.store.get(target)
        if target.plural == "pods" and self.server.graceful_pod_deletion:
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            if grace > 0:
                return web.json_response(self._mark_deleted(target, obj, grace))
        if target.plural == "namespaces":
            for plural, objects in self.store.objects.items():
                for namespace, name in [k for k in objects if k[0] == target.name]:
                    self.store.remove(plural, namespace, name)
        removed = self.store.remove(target.plural, target.namespace, target.name)
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
        return self.store.replace(target.plural, target.namespace, new, obj)

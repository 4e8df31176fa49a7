"""Faults on purpose: the sandbox API server errs, drops, answers late, breaks watches, restarts.

Tests often run the sandbox as a child process, so the switch is an admin-only HTTP route on the
API server itself (the admin token of the kubeconfig-less ``sandbox`` command's first line):

- ``POST /sandbox/faults`` with ``{"rules": [RULE, ...]}`` replaces the rules;
- ``GET /sandbox/faults`` shows them, with how often each matched and fired, and the restarts;
- ``DELETE /sandbox/faults`` removes every rule;
- ``POST /sandbox/watches/break`` with ``{"identity": "hub"}`` cuts the open watches now;
- ``POST /sandbox/restart`` with ``{"down_seconds": 1}`` stops listening and listens again on the
  same port. Open watches end, as they do when kube-apiserver restarts; the objects and the change
  history stay, as they would in etcd, so a watch resumes from its resourceVersion.

A RULE is a JSON object; the first rule that fires on a request applies to it:

- ``verb``: create, get, list, watch, update, delete or ``*`` (default create);
- ``resource``: a plural such as pods (the default), or ``*``;
- ``name``: a shell pattern for the object's name (of a create: the name in its body), default
  ``*``; e.g. ``jupyter-u0*`` for some users' pods;
- ``identity``: whose requests: ``hub`` (the default; the hub's token), ``admin`` (the kubelet and
  the tests), or ``*``;
- ``action``:

  - ``error``: answer ``status`` (default 500; 503 and any 5xx work) as a Kubernetes Status;
  - ``drop``: close the connection without an answer;
  - ``delay``: answer ``seconds`` late. The request is carried out even when its client has given
    up waiting, as a real API server does: the late create that the client timed out on;
  - ``break`` (watches): stream for ``seconds``, then cut the connection mid-stream;

- ``when``: ``before`` (the default) the request is carried out; ``after``: it is carried out and
  then its answer is replaced, lost or late; ``late`` (errors and drops): the answer goes at once
  and the request is still carried out ``seconds`` later. The last two make a write that lands
  although its client was told it failed. Watches take only ``before``;
- ``count``: fire on the next N matching requests only (default: on every one, until cleared);
- ``fraction``: fire on this share of the matching requests (default 1), drawn from
  ``random.Random(seed)`` (``seed`` defaults to 0), so that a run can be repeated.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .rbac import IDENTITY
from .resources import RESOURCES, ApiError, Obj, Target, bad_request
from .routes import read_body

if TYPE_CHECKING:
    from .apiserver import ApiServer

__all__ = ["Faults", "Rule"]

log = logging.getLogger(__name__)

VERBS = ("create", "get", "list", "watch", "update", "delete")
ACTIONS = ("error", "drop", "delay", "break")
IDENTITIES = ("hub", "admin", "*")
REASONS = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
MESSAGES = {
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}


@dataclass
class Rule:
    """One fault and the requests it applies to (see the module's docstring)."""

    action: str
    verb: str = "create"
    resource: str = "pods"
    name: str = "*"
    identity: str = "hub"
    when: str = "before"
    status: int = 500
    seconds: float = 0.0
    count: int | None = None
    fraction: float = 1.0
    seed: int = 0
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        problems = []
        if self.action not in ACTIONS:
            problems.append(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.verb not in (*VERBS, "*"):
            problems.append(f"verb must be one of {', '.join(VERBS)} or '*', not {self.verb!r}")
        if self.resource not in (*RESOURCES, "*"):
            problems.append(f"resource {self.resource!r} is not served here")
        if self.identity not in IDENTITIES:
            problems.append(f"identity must be one of {', '.join(IDENTITIES)}")
        if self.when not in ("before", "after", "late"):
            problems.append("when must be 'before', 'after' or 'late'")
        if self.when != "before" and self.verb in ("watch", "*"):
            problems.append("a watch has no answer to replace: use when 'before'")
        if self.when == "late" and self.action not in ("error", "drop"):
            problems.append("only an error or a drop can come before a late write")
        if self.action == "break" and self.verb != "watch":
            problems.append("only a watch can break mid-stream: use verb 'watch'")
        if not 500 <= self.status <= 599:
            problems.append(f"status must be a 5xx, not {self.status}")
        if not 0 < self.fraction <= 1:
            problems.append(f"fraction must be in (0, 1], not {self.fraction}")
        if self.seconds < 0 or (self.count is not None and self.count < 0):
            problems.append("seconds and count cannot be negative")
        if problems:
            raise bad_request("sandbox fault rule: " + "; ".join(problems))

    @classmethod
    def parse(cls, spec: Any) -> Rule:
        if not isinstance(spec, dict) or "action" not in spec:
            raise bad_request(f"sandbox fault rule: not an object with an action: {spec!r}")
        unknown = set(spec) - {f.name for f in fields(cls) if f.init}
        if unknown:
            raise bad_request(f"sandbox fault rule: unknown fields {sorted(unknown)}")
        try:
            return cls(**spec)
        except TypeError as e:
            raise bad_request(f"sandbox fault rule: {e}") from None

    def fires(self, identity: str, verb: str, plural: str, name: str) -> bool:
        """Whether this rule applies to this request (and count it if so)."""
        if self.identity not in ("*", identity) or self.verb not in ("*", verb):
            return False
        if self.resource not in ("*", plural) or not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.matched += 1
        if self.fraction < 1 and self._random.random() >= self.fraction:
            return False
        self.fired += 1
        return True

    def as_dict(self) -> Obj:
        return asdict(self)


def _error(rule: Rule) -> ApiError:
    code = rule.status
    message = MESSAGES.get(code, "Internal error occurred: a fault injected by the sandbox")
    return ApiError(code, REASONS.get(code, "InternalError"), message)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer (the handler is then cancelled)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()


class Faults:
    """The fault rules of one ApiServer, and its admin-only control routes."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.rules: list[Rule] = []
        self.restarts = 0
        self._watches: dict[int, tuple[web.Request, str]] = {}  # open watches and whose they are
        self._background: set[asyncio.Future[Any]] = set()

    # --- the requests under /api/v1 ---

    async def apply(
        self,
        request: web.Request,
        verb: str,
        target: Target,
        carry_out: Callable[[], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Carry out one authorized request, with the fault that the first firing rule makes."""
        identity = request[IDENTITY]
        name = target.name
        if verb == "create" and any(r.name != "*" for r in self.rules):
            name = await _name_in_body(request)
        rule = next((r for r in self.rules if r.fires(identity, verb, target.plural, name)), None)
        if verb == "watch":
            self._watches[id(request)] = (request, identity)
        try:
            if rule is None:
                return await carry_out()
            return await self._faulty(rule, request, carry_out)
        finally:
            self._watches.pop(id(request), None)

    async def _faulty(
        self,
        rule: Rule,
        request: web.Request,
        carry_out: Callable[[], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if rule.action == "break":
            cut = asyncio.get_running_loop().call_later(rule.seconds, _abort, request)
            try:
                return await carry_out()
            finally:
                cut.cancel()
        if rule.action == "delay" and rule.when == "before":
            # Read the body now: the client may be gone when the request is carried out.
            await request.read()
            late = asyncio.ensure_future(self._later(rule.seconds, carry_out))
            self._keep(late)
            return await asyncio.shield(late)
        if rule.when == "after":
            response = await carry_out()
        elif rule.when == "late":
            await request.read()  # the client is told at once; the request stays to be done
            self._keep(asyncio.ensure_future(self._later(rule.seconds, carry_out)))
        if rule.action == "error":
            raise _error(rule)
        if rule.action == "drop":
            return _drop(request)
        await asyncio.sleep(rule.seconds)  # a delay after the request was carried out
        return response

    @staticmethod
    async def _later(
        seconds: float, carry_out: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await carry_out()

    def _keep(self, future: asyncio.Future[Any]) -> None:
        """Hold a background task until it ends, and read its outcome (its client may be gone)."""
        self._background.add(future)

        def done(f: asyncio.Future[Any]) -> None:
            self._background.discard(f)
            error = None if f.cancelled() else f.exception()
            if isinstance(error, ApiError):  # e.g. a late create that met its pod: 409
                log.debug("sandbox fault: a late request was answered %s", error.status)
            elif error is not None:
                log.warning("sandbox fault: a late request or restart failed", exc_info=error)

        future.add_done_callback(done)

    def break_watches(self, identity: str = "*") -> int:
        """Cut the open watches of `identity` ("*": everyone's) mid-stream; how many."""
        cut = [r for r, who in self._watches.values() if identity in ("*", who)]
        for request in cut:
            _abort(request)
        return len(cut)

    # --- the control routes ---

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sandbox/faults", self._get)
        app.router.add_post("/sandbox/faults", self._set)
        app.router.add_delete("/sandbox/faults", self._clear)
        app.router.add_post("/sandbox/watches/break", self._break)
        app.router.add_post("/sandbox/restart", self._restart)

    @staticmethod
    def _admin_only(request: web.Request) -> None:
        if request[IDENTITY] != "admin":
            raise ApiError(403, "Forbidden", "only the sandbox admin may inject faults")

    def _state(self) -> Obj:
        return {"rules": [r.as_dict() for r in self.rules], "restarts": self.restarts}

    async def _get(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        return web.json_response(self._state())

    async def _set(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        body = await read_body(request, optional=True)
        specs = body.get("rules")
        if not isinstance(specs, list):
            raise bad_request('the body must be {"rules": [...]}')
        self.rules = [Rule.parse(spec) for spec in specs]
        return web.json_response(self._state())

    async def _clear(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        self.rules = []
        return web.json_response(self._state())

    async def _break(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        identity = (await read_body(request, optional=True)).get("identity", "*")
        if identity not in IDENTITIES:
            raise bad_request(f"identity must be one of {', '.join(IDENTITIES)}")
        return web.json_response({"broken": self.break_watches(identity)})

    async def _restart(self, request: web.Request) -> web.Response:
        """Answer first, then restart: the listener cannot stop inside one of its handlers."""
        self._admin_only(request)
        down = (await read_body(request, optional=True)).get("down_seconds", 0)
        if not isinstance(down, int | float) or not 0 <= down <= 60:
            raise bad_request("down_seconds must be a number of seconds from 0 to 60")
        restart = asyncio.ensure_future(self._restart_later(float(down)))
        self._keep(restart)
        return web.json_response({"restarts": self.restarts + 1}, status=202)

    async def _restart_later(self, down: float) -> None:
        await asyncio.sleep(0.05)  # let the answer go out
        await self.server.restart(down)
        self.restarts += 1


async def _name_in_body(request: web.Request) -> str:
    """The metadata.name in a create's body ("" if none; the route then answers the error)."""
    try:
        body = await read_body(request)
    except ApiError:
        return ""
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()

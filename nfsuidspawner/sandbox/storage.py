"""The sandbox API server's storage and watch: objects, resourceVersions and the change history.

Every write gets the next resourceVersion and lands in a bounded history that watches replay
from (a watch from a version older than the history answers 410 Expired, as after a real
server's compaction). A watch sees an object that starts or stops matching its selectors as
ADDED or DELETED, like the real watch cache. The writes here do no checks: the routes check
first and then write without awaiting in between, so each request is one atomic step.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import uuid
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from .matching import Requirement
from .resources import RESOURCES, ApiError, Obj, Target, bad_request, not_found, now


@dataclass(frozen=True)
class Change:
    """One write, as kept in the watch history."""

    resource_version: int
    plural: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None

    @functools.cached_property
    def encoded(self) -> bytes:
        """The object as JSON, encoded once for every watcher."""
        return json.dumps(self.obj).encode()


class Store:
    """The objects of every kind by (namespace, name), and the history of changes to them."""

    def __init__(self, history_limit: int = 1000) -> None:
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in RESOURCES}
        self.resource_version = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._compacted = 0  # every change after this resourceVersion is in _history
        self._watchers: set[asyncio.Queue[Change | None]] = set()

    # --- writes ---

    def _commit(self, plural: str, namespace: str, type_: str, obj: Obj, old: Obj | None) -> None:
        change = Change(self.resource_version, plural, namespace, type_, obj, old)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().resource_version
        for queue in self._watchers:
            queue.put_nowait(change)

    def _next_resource_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def insert(self, plural: str, namespace: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["resourceVersion"] = self._next_resource_version()
        self.objects[plural][(namespace, meta["name"])] = obj
        self._commit(plural, namespace, "ADDED", obj, None)
        return obj

    def replace(self, plural: str, namespace: str, obj: Obj, old: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self.objects[plural][(namespace, obj["metadata"]["name"])] = obj
        self._commit(plural, namespace, "MODIFIED", obj, old)
        return obj

    def remove(self, plural: str, namespace: str, name: str) -> Obj:
        old = self.objects[plural].pop((namespace, name))
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(plural, namespace, "DELETED", obj, old)
        return obj

    # --- reads ---

    def get(self, target: Target) -> Obj:
        obj = self.objects[target.plural].get((target.namespace, target.name))
        if obj is None:
            raise not_found(target.plural, target.name)
        return obj

    def matching(self, target: Target, matches: Requirement) -> list[Obj]:
        return [
            obj
            for (namespace, _), obj in sorted(self.objects[target.plural].items())
            if (not target.namespace or namespace == target.namespace) and matches(obj)
        ]

    # --- watch ---

    @staticmethod
    def as_seen_by(change: Change, target: Target, matches: Requirement) -> str | None:
        """The type of the watch event one watcher gets for a change, or None.

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
        return type_

    async def watch(
        self,
        request: web.Request,
        target: Target,
        matches: Requirement,
        since: str,
        timeout: int | None,
    ) -> web.StreamResponse:
        """Stream the changes after resourceVersion `since` ("" or "0": the current objects)."""
        backlog: list[bytes] = []
        if since in ("", "0"):
            backlog = [
                _line("ADDED", json.dumps(o).encode()) for o in self.matching(target, matches)
            ]
        elif not since.isdigit():
            raise bad_request(f"invalid resource version: {since!r}")
        elif int(since) < self._compacted:
            status = ApiError(
                410, "Expired", f"too old resource version: {since} ({self._compacted + 1})"
            ).status
            backlog = [_line("ERROR", json.dumps(status).encode())]
        else:
            for change in self._history:
                if change.resource_version > int(since):
                    type_ = self.as_seen_by(change, target, matches)
                    if type_ is not None:
                        backlog.append(_line(type_, change.encoded))
        # Registered in the same step as the backlog was read, so no change falls in between.
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for line in backlog:
                await response.write(line)
            if backlog and backlog[0].startswith(b'{"type": "ERROR"'):
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
                type_ = self.as_seen_by(change, target, matches)
                if type_ is not None:
                    await response.write(_line(type_, change.encoded))
            await response.write_eof()
            return response
        finally:
            self._watchers.discard(queue)

    def end_watches(self) -> None:
        """End every watch stream (the server is stopping)."""
        for queue in list(self._watchers):
            queue.put_nowait(None)


def _line(type_: str, encoded: bytes) -> bytes:
    """One line of a watch stream: {"type": ..., "object": ...}."""
    return b'{"type": "%s", "object": %s}\n' % (type_.encode(), encoded)

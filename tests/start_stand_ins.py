"""Stand-ins for the unit tests of starts that fail and labs a restarted hub adopts: what
KubeSpawner's reflectors hold, the API server's pod create and delete, a JupyterHub database
on disk, and alice's spawner on it (a pytest plugin, loaded by tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.utils import utcnow
from kubernetes_asyncio.client import V1ObjectMeta, V1Pod
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from kubespawner.spawner import EventReflector

from nfsuidspawner import NFSUIDSpawner

POD = "jupyter-system/jupyter-alice"


class Reflector:
    """What KubeSpawner's pod reflector holds: pods by "namespace/name"."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}

    @property
    def first_load_future(self) -> asyncio.Future:
        loaded = asyncio.get_running_loop().create_future()
        loaded.set_result(None)
        return loaded


# KubeSpawner's annotations on alice's default server's pod (_build_common_annotations).
ALICES = {"hub.jupyter.org/username": "alice"}


def pod(uid: str, **meta: Any) -> dict[str, Any]:
    meta = {"name": "jupyter-alice", "uid": uid, "annotations": ALICES} | meta
    return {"metadata": meta, "status": {}}


class Api:
    """The API server's pod create and delete. A delete by uid removes that pod only; then
    the next of `late` (a create that an earlier attempt timed out on) takes the name."""

    def __init__(self, reflector: Reflector, key: str, create: BaseException | None = None):
        self.reflector, self.key, self.create = reflector, key, create
        self.late: list[dict[str, Any]] = []
        self.deletes: list[str | None] = []
        self.stubborn = False  # the pod stays when deleted (a finalizer, a lost node)

    async def create_namespaced_pod(self, namespace: str, body: Any, **_: Any) -> None:
        if self.create:
            raise self.create

    async def delete_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        uid = body.preconditions.uid if body.preconditions else None
        self.deletes.append(uid)
        found = self.reflector.pods.get(self.key)
        if found and uid in (None, found["metadata"]["uid"]) and not self.stubborn:
            del self.reflector.pods[self.key]
            if self.late:
                self.reflector.pods[self.key] = self.late.pop(0)


def reflecting(monkeypatch: pytest.MonkeyPatch, kind: str, found: Any) -> Any:
    """`found` as KubeSpawner's reflector of `kind` ("pods", "events") in the tests' namespaces."""
    for namespace in ("default", "jupyter-system"):
        monkeypatch.setitem(KubeSpawner.reflectors, (kind, namespace), found)
    return found


@pytest.fixture
def reflector(monkeypatch: pytest.MonkeyPatch) -> Reflector:
    return reflecting(monkeypatch, "pods", Reflector())


@pytest.fixture
def hub_db(tmp_path: Path) -> Callable[[], Any]:
    """Sessions of a JupyterHub database on disk: what one commits, another reads."""
    url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    orm.new_session_factory(url)().close()  # creates the tables
    return lambda: orm.new_session_factory(url)()


@pytest.fixture
def hub_spawner(make_spawner, hub_db) -> Iterator[Callable[..., NFSUIDSpawner]]:
    """A spawner whose orm_spawner is alice's default server in hub_db, with a server."""
    made: list[NFSUIDSpawner] = []
    sessions = []  # its objects stay attached while it lives, as the hub's session does

    def make(config: dict[str, Any] | None = None, api: Api | None = None) -> NFSUIDSpawner:
        db = hub_db()
        sessions.append(db)
        user = orm.User(name="alice")
        db.add(user)
        server = orm.Spawner(user=user, name="", server=orm.Server())
        db.add(server)
        db.commit()
        spawner = make_spawner({"namespace": "jupyter-system"} | (config or {}))
        spawner.orm_spawner = server
        if api:
            spawner.api = api
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        if spawner._reaper:
            spawner._reaper.cancel()


def pending_pod(uid: str = "pending", **status: Any) -> dict[str, Any]:
    """A lab pod as the reflector holds it while it starts."""
    return {
        "metadata": {"name": "jupyter-alice", "uid": uid, "annotations": ALICES},
        "spec": {"containers": [{"name": "notebook", "ports": [NOTEBOOK_PORT]}]},
        "status": {"phase": "Pending", "podIP": None, **status},
    }


NOTEBOOK_PORT = {"name": "notebook-port", "containerPort": 8888}
INIT_DONE = {"name": "nfsuid-identity", "state": {"terminated": {"exitCode": 0}}}


class Events:
    """What KubeSpawner's event reflector holds: events by "namespace/name", and its `events`,
    all of them oldest first."""

    events = EventReflector.events

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}

    def add(self, *events: dict[str, Any]) -> None:
        for e in events:
            self.resources[f"{e['metadata']['namespace']}/{e['metadata']['name']}"] = e


_event_times = itertools.count()


def event(
    pod_uid: str,
    reason: str,
    message: str,
    pod: str = "jupyter-alice",
    when: str | None = None,
    namespace: str = "jupyter-system",
) -> dict[str, Any]:
    """An event about pod `namespace`/`pod` (its uid `pod_uid`), later than those made before
    it unless `when` (its lastTimestamp) says otherwise."""
    n = next(_event_times)
    return {
        "metadata": {"name": f"{pod}.{n}", "namespace": namespace, "uid": f"event-{n}"},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": pod_uid},
        "reason": reason,
        "message": message,
        "lastTimestamp": when or f"2026-11-29T09:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "eventTime": None,
    }


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    return reflecting(monkeypatch, "events", Events())


def running_pod(uid: str = "pending") -> dict[str, Any]:
    ready = {"name": "notebook", "ready": True, "state": {"running": {}}}
    return pending_pod(
        uid,
        phase="Running",
        podIP="10.0.0.7",
        initContainerStatuses=[INIT_DONE],
        containerStatuses=[ready],
    )


@pytest.fixture
def checked(hub_spawner, reflector: Reflector, events: Events):
    """What a restarted hub's check of alice's unfinished start (app.py, check_spawner) gets
    from get_url, and how long that took: her pod is `found`, and becomes `later` after
    `after` s; her start began `began` s before the check."""

    async def check(
        found: dict[str, Any],
        later: dict[str, Any] | None = None,
        after: float = 0.5,
        began: float = 10,
        start_timeout: float = 60,
    ) -> tuple[str, str, float]:
        reflector.pods[POD] = found
        spawner = hub_spawner({"start_timeout": start_timeout})
        spawner.orm_spawner.started = utcnow(with_tz=False) - timedelta(seconds=began)
        spawner.load_state({"pod_name": "jupyter-alice"})
        saved = spawner.server.url
        if later:
            asyncio.get_running_loop().call_later(after, reflector.pods.__setitem__, POD, later)
        checking = time.monotonic()
        url = await spawner.get_url()
        return url, saved, time.monotonic() - checking

    return check


def api_error(status: int, reason: str, body: str | None = None) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    return error


async def conflict(spawner: NFSUIDSpawner, timeout: float = 5) -> bool:
    """KubeSpawner's create request, answered 409 Conflict."""
    pod = V1Pod(metadata=V1ObjectMeta(name=spawner.pod_name))
    return await asyncio.wait_for(spawner._make_create_pod_request(pod, 1), timeout)


UNSCHEDULED = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient memory.",
}

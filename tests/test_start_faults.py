"""Faults during starts: what the user is told, which pods are deleted, and what a hub
that restarted in the middle of a start records.

KubeSpawner's start and poll and the API server are stand-ins; the pods are what a reflector
would hold. The end-to-end tier (tests/e2e/test_faults.py) brings the same faults through a
real hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jupyterhub import orm
from jupyterhub.utils import format_exception, utcnow
from kubernetes_asyncio.client import V1ObjectMeta, V1Pod
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web

from nfsuidspawner import Identity, NFSUIDError, NFSUIDSpawner
from nfsuidspawner.failures import start_failure
from nfsuidspawner.status import not_ready

POD = "jupyter-system/jupyter-alice"
STATUS_500 = (
    '{"kind": "Status", "status": "Failure", "code": 500, "reason": "InternalError",'
    ' "message": "Internal error occurred: etcdserver: request timed out"}'
)
API_FIX = "Fix: start the server again. If it fails again, check that the Kubernetes API server"


def api_error(status: int, reason: str, body: str | None = None) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    return error


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        pytest.param(
            api_error(500, "Internal Server Error", STATUS_500),
            "the Kubernetes API answered (500) Internal Server Error:"
            " Internal error occurred: etcdserver: request timed out",
            id="500-with-a-status",
        ),
        pytest.param(
            api_error(503, "Service Unavailable", "<html>not json</html>"),
            "the Kubernetes API answered (503) Service Unavailable",
            id="503-without-a-status",
        ),
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            "the connection to the Kubernetes API failed: Server disconnected",
            id="connection-dropped",
        ),
        pytest.param(
            ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 443)"),
            "the connection to the Kubernetes API failed: [Errno 111] Connect call failed",
            id="api-server-down",
        ),
        pytest.param(
            TimeoutError(f"Could not create pod {POD}"),
            f"timed out: Could not create pod {POD}",
            id="creates-timed-out",
        ),
        pytest.param(TimeoutError(), "timed out", id="bare-timeout"),
    ],
)
def test_an_api_failure_names_the_user_the_pod_and_the_fix(error: Exception, cause: str) -> None:
    message = start_failure("alice", POD, error)

    assert message is not None
    assert message.startswith(f"nfsuid: user alice: starting pod {POD} failed: {cause}")
    assert API_FIX in message
    assert "\n" not in message


def test_another_failure_keeps_its_words_and_points_at_the_log() -> None:
    message = start_failure("alice", POD, KeyError("spec"))

    assert message == (
        f"nfsuid: user alice: starting pod {POD} failed: KeyError: 'spec'."
        " Fix: the hub's log has the traceback; start the server again once it is fixed"
    )


def spoken() -> Exception:
    error = RuntimeError("x")
    error.jupyterhub_message = "a hook's own words"  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(NFSUIDError("nfsuid: user alice: refused. Fix: x"), id="refusal"),
        pytest.param(web.HTTPError(403, "over quota"), id="http-error-for-the-user"),
        pytest.param(spoken(), id="already-has-a-message"),
        pytest.param(asyncio.CancelledError(), id="cancelled"),
    ],
)
def test_errors_that_speak_for_themselves_are_left_alone(error: BaseException) -> None:
    assert start_failure("alice", POD, error) is None


# --- through the spawner ----------------------------------------------------------------------


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


async def test_a_failed_start_raises_kubespawners_exception_with_a_line_for_the_user(
    make_spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = api_error(500, "Internal Server Error", STATUS_500)

    async def kube_start(self: KubeSpawner) -> str:
        raise failure

    monkeypatch.setattr(KubeSpawner, "start", kube_start)
    spawner = make_spawner({"namespace": "jupyter-system"})
    try:
        with pytest.raises(ApiException) as raised:
            await spawner.start()
    finally:
        spawner._reaper.cancel()

    assert raised.value is failure
    message, _ = format_exception(raised.value)  # what the spawn page and the REST API show
    assert message == start_failure(
        "alice", POD, api_error(500, "Internal Server Error", STATUS_500)
    )


async def conflict(spawner: NFSUIDSpawner, timeout: float = 5) -> bool:
    """KubeSpawner's create request, answered 409 Conflict."""
    pod = V1Pod(metadata=V1ObjectMeta(name=spawner.pod_name))
    return await asyncio.wait_for(spawner._make_create_pod_request(pod, 1), timeout)


async def test_a_late_create_in_the_way_does_not_hold_up_the_start(
    hub_spawner, reflector: Reflector
) -> None:
    """A 409: the pod in the way goes, and a late create brings the name back meanwhile.
    KubeSpawner would wait until no pod has the name: until the hub's start_timeout."""
    api = Api(reflector, POD, create=api_error(409, "Conflict"))
    reflector.pods[POD] = pod("first")
    api.late.append(pod("late"))
    spawner = hub_spawner(api=api)

    began = time.monotonic()
    created = await conflict(spawner)

    assert created is False  # KubeSpawner creates again: it meets the late pod, and comes back
    assert api.deletes == ["first"]
    assert reflector.pods[POD]["metadata"]["uid"] == "late"
    assert time.monotonic() - began < 2


async def test_a_pod_in_the_way_that_stays_ends_the_start_with_a_message(
    hub_spawner, reflector: Reflector
) -> None:
    api = Api(reflector, POD, create=api_error(409, "Conflict"))
    api.stubborn = True
    reflector.pods[POD] = pod("stuck")
    spawner = hub_spawner({"k8s_api_request_retry_timeout": 1}, api=api)

    with pytest.raises(TimeoutError) as raised:
        await conflict(spawner)

    assert set(api.deletes) == {"stuck"}
    assert format_exception(raised.value)[0] == (
        f"nfsuid: user alice: pod {POD}, left by an earlier start or attempt, was still there 1 s"
        " after the hub deleted it to start a new one. Fix: start the server again. If it fails"
        " again, `kubectl describe pod` shows what holds it (finalizers, its node)"
    )


async def pending_start(spawner: NFSUIDSpawner, monkeypatch: pytest.MonkeyPatch) -> asyncio.Future:
    """A start that waits for its pod, as KubeSpawner's does, until it is cancelled."""

    async def kube_start(self: KubeSpawner) -> str:
        await asyncio.Event().wait()
        return "never"

    monkeypatch.setattr(KubeSpawner, "start", kube_start)
    started = spawner.start()
    await asyncio.sleep(0.05)
    return started


async def cancelled(started: asyncio.Future) -> None:
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started


async def test_a_hub_that_shuts_down_leaves_the_pending_starts_pods_to_the_next(
    hub_spawner, reflector: Reflector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterHub's shutdown cancels every task, pending starts included, and keeps their
    servers in its database (cleanup_servers False): the next hub adopts their pods."""
    api = Api(reflector, POD)
    reflector.pods[POD] = pod("pending")
    spawner = hub_spawner(api=api)

    await cancelled(await pending_start(spawner, monkeypatch))
    await asyncio.sleep(1.5)  # the reaper looks every second

    assert api.deletes == []
    assert POD in reflector.pods


@pytest.mark.parametrize(
    "lets_go",
    [
        pytest.param(lambda spawner: setattr(spawner, "_stop_pending", True), id="stopping"),
        pytest.param(lambda spawner: setattr(spawner, "server", None), id="stopped"),
    ],
)
async def test_a_start_the_hub_gave_up_on_has_its_pod_deleted(
    hub_spawner, reflector: Reflector, monkeypatch: pytest.MonkeyPatch, lets_go
) -> None:
    """Timed out or interrupted: the hub stops the server (User.stop), and deletes the pods
    its poll sees; the reaper deletes the one a late create makes."""
    api = Api(reflector, POD)
    spawner = hub_spawner(api=api)

    await cancelled(await pending_start(spawner, monkeypatch))
    lets_go(spawner)
    reflector.pods[POD] = pod("late")
    await asyncio.sleep(1.5)

    assert api.deletes == ["late"]
    assert POD not in reflector.pods


# --- a lab that a restarted hub adopted ---------------------------------------------------------


def lab_pod(
    init_message: str | None = "nfsuid: user alice runs as 2001:3001\n",
    runs_as: tuple[int, int] = (0, 0),
    lab_message: str | None = None,
) -> dict[str, Any]:
    """A running lab pod: its notebook container runs as `runs_as` (0: start.sh's root
    phase, then the user the initContainer found) and ended with `lab_message`, if any."""
    init = {"name": "nfsuid-identity", "state": {"running": {}}}
    if init_message is not None:
        init["state"] = {"terminated": {"exitCode": 0, "message": init_message}}
    notebook = {"name": "notebook", "state": {"running": {}}}
    if lab_message is not None:
        notebook["lastState"] = {"terminated": {"exitCode": 0, "message": lab_message}}
    security = {"runAsUser": runs_as[0], "runAsGroup": runs_as[1]}
    return {
        "metadata": {"name": "jupyter-alice", "uid": "adopted", "annotations": ALICES},
        "spec": {"containers": [{"name": "notebook", "securityContext": security}]},
        "status": {
            "phase": "Running",
            "initContainerStatuses": [init],
            "containerStatuses": [notebook],
        },
    }


@pytest.fixture
def adopted(hub_spawner, reflector: Reflector, hub_db, monkeypatch: pytest.MonkeyPatch):
    """Poll a lab that a restarted hub adopted (state without an identity) whose pod is
    `found`: what the spawner knows after, and what the hub's database holds."""

    async def kube_poll(self: KubeSpawner) -> int | None:
        return None if self.pod_reflector.pods.get(POD) else 1

    monkeypatch.setattr(KubeSpawner, "poll", kube_poll)

    async def poll(found: dict[str, Any], state: dict | None = None) -> tuple[Any, dict]:
        reflector.pods[POD] = found
        spawner = hub_spawner()
        spawner.load_state(state or {"pod_name": "jupyter-alice"})
        assert await spawner.poll() is None
        (saved,) = [s.state for s in hub_db().query(orm.Spawner)]
        return spawner.identity, (saved or {}).get("nfsuid_identity")

    return poll


async def test_a_restarted_hub_records_the_identity_the_initcontainer_found(adopted) -> None:
    identity, saved = await adopted(lab_pod())

    assert identity == Identity(2001, 3001)
    assert saved == {"uid": 2001, "gid": 3001}


async def test_a_restarted_hub_records_the_identity_the_hub_gave_the_pod(adopted) -> None:
    # The hub source: the lab runs as the owner the hub found; the directory's group has
    # changed since, which the initContainer reports, but the lab runs as the pod says.
    pod = lab_pod("nfsuid: user alice runs as 2001:3999\n", runs_as=(2001, 3001))

    identity, saved = await adopted(pod)

    assert identity == Identity(2001, 3001)
    assert saved == {"uid": 2001, "gid": 3001}


@pytest.mark.parametrize(
    "found",
    [
        pytest.param(lab_pod(init_message=None), id="initcontainer-still-running"),
        pytest.param(
            lab_pod(init_message="", lab_message="nfsuid: user alice runs as 2002:3002\n"),
            id="the-lab-container-claims-an-identity",
        ),
    ],
)
async def test_a_restarted_hub_records_nothing_the_kubelet_or_hub_did_not_say(
    adopted, found: dict[str, Any]
) -> None:
    identity, saved = await adopted(found)

    assert (identity, saved) == (None, None)


async def test_a_known_identity_is_not_replaced_by_the_pods(adopted) -> None:
    state = {"pod_name": "jupyter-alice", "nfsuid_identity": {"uid": 2001, "gid": 3001}}

    identity, saved = await adopted(lab_pod("nfsuid: user alice runs as 2002:3002\n"), state)

    assert identity == Identity(2001, 3001)
    assert saved is None  # nothing new to save


# --- a pod that is not ready within start_timeout ----------------------------------------------


def pending_pod(uid: str = "pending", **status: Any) -> dict[str, Any]:
    """A lab pod as the reflector holds it while it starts."""
    return {
        "metadata": {"name": "jupyter-alice", "uid": uid, "annotations": ALICES},
        "spec": {"containers": [{"name": "notebook", "ports": [NOTEBOOK_PORT]}]},
        "status": {"phase": "Pending", "podIP": None, **status},
    }


NOTEBOOK_PORT = {"name": "notebook-port", "containerPort": 8888}
UNSCHEDULED = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient memory.",
}
IDENTITY_RUNNING = {"name": "nfsuid-identity", "state": {"running": {}}}
IMAGE_PULL = {
    "name": "notebook",
    "ready": False,
    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
}
INIT_DONE = {"name": "nfsuid-identity", "state": {"terminated": {"exitCode": 0}}}


@pytest.mark.parametrize(
    ("found", "waiting"),
    [
        pytest.param(None, "the hub sees no such pod", id="no-pod"),
        pytest.param(
            pending_pod(conditions=[UNSCHEDULED]),
            "no node was found for it (Unschedulable: 0/3 nodes are available:"
            " 3 Insufficient memory.)",
            id="unschedulable",
        ),
        pytest.param(
            pending_pod(initContainerStatuses=[IDENTITY_RUNNING]),
            "initContainer nfsuid-identity is still reading the owner of the user's directory"
            " (an NFS server that does not answer holds it)",
            id="identity-check-hangs",
        ),
        pytest.param(
            pending_pod(initContainerStatuses=[INIT_DONE], containerStatuses=[IMAGE_PULL]),
            "container notebook is waiting (ImagePullBackOff: Back-off pulling image)",
            id="image-pull",
        ),
        pytest.param(
            pending_pod(
                phase="Running",
                podIP="10.0.0.7",
                containerStatuses=[{"name": "notebook", "ready": False, "state": {"running": {}}}],
            ),
            "container notebook runs but is not ready",
            id="not-ready",
        ),
        pytest.param(pending_pod(), "it is Pending, without an IP address", id="nothing-said"),
    ],
)
def test_what_a_pod_waits_for_is_said_in_the_kubelets_words(
    found: dict[str, Any] | None, waiting: str
) -> None:
    assert not_ready(found) == waiting


class Events:
    """What KubeSpawner's event reflector holds: events, oldest first."""

    def __init__(self, *events: dict[str, Any]) -> None:
        self.events = list(events)


def event(uid: str, reason: str, message: str) -> dict[str, Any]:
    involved = {"kind": "Pod", "name": "jupyter-alice", "uid": uid}
    return {"involvedObject": involved, "reason": reason, "message": message}


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    return reflecting(monkeypatch, "events", Events())


async def test_a_start_not_ready_within_start_timeout_says_what_it_waits_for(
    hub_spawner, reflector: Reflector, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterHub's own timeout raises a TimeoutError with no words ("Spawn failed: "): the
    spawner ends its start first, with a TimeoutError that names the user, the pod, what it
    waits for and the fix. The failed start's pod is deleted once the hub lets go."""
    api = Api(reflector, POD)
    reflector.pods[POD] = pending_pod(initContainerStatuses=[IDENTITY_RUNNING])
    events.events += [
        event("earlier", "Killing", "an earlier pod of that name"),
        event("pending", "Pulled", "Container image already present on machine"),
        event("pending", "Started", "Started container nfsuid-identity"),
    ]
    spawner = hub_spawner({"start_timeout": 2}, api=api)

    async def kube_start(self: KubeSpawner) -> str:
        await asyncio.Event().wait()
        return "never"

    monkeypatch.setattr(KubeSpawner, "start", kube_start)
    began = time.monotonic()
    with pytest.raises(TimeoutError) as raised:  # as JupyterHub's User.spawn waits
        await asyncio.wait_for(spawner.start(), spawner.start_timeout)

    assert format_exception(raised.value)[0] == (
        f"nfsuid: user alice: pod {POD} was not ready within start_timeout (2 s): initContainer"
        " nfsuid-identity is still reading the owner of the user's directory (an NFS server that"
        " does not answer holds it); its last event: Started: Started container nfsuid-identity."
        " Fix: if it only needs longer (a new node, a large image), raise"
        " c.KubeSpawner.start_timeout; otherwise `kubectl describe pod` shows what holds it"
    )
    assert 1.5 < time.monotonic() - began < 2
    spawner.server = None  # the hub stops the server (User.spawn, on any failure)
    await asyncio.sleep(1.5)
    assert api.deletes == ["pending"]


async def test_a_refusal_is_reported_while_the_pods_deletion_hangs(
    hub_spawner, reflector: Reflector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KubeSpawner's stop waits for the pod to go for up to start_timeout; a refusal is
    reported within k8s_api_request_retry_timeout, and the reaper deletes the pod later."""
    refusal = NFSUIDError("nfsuid: user alice: /data/hpc/home/alice is owned by uid 0 (root).")

    async def kube_start(self: KubeSpawner) -> str:
        raise refusal

    async def kube_stop(self: KubeSpawner, now: bool = False) -> None:
        await asyncio.Event().wait()  # a pod that does not go, an API server that hangs

    monkeypatch.setattr(KubeSpawner, "start", kube_start)
    monkeypatch.setattr(KubeSpawner, "stop", kube_stop)
    spawner = hub_spawner({"k8s_api_request_retry_timeout": 1, "start_timeout": 60})

    began = time.monotonic()
    with pytest.raises(NFSUIDError) as raised:
        await asyncio.wait_for(spawner.start(), 5)

    assert raised.value is refusal
    assert time.monotonic() - began < 2
    assert spawner._reaper is not None


# --- a lab whose start a restarted hub found unfinished -------------------------------------------


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


async def test_a_restarted_hub_checks_a_pod_that_was_pending_at_its_address(checked) -> None:
    url, saved, seconds = await checked(pending_pod(), later=running_pod())

    assert url == "http://10.0.0.7:8888"
    assert saved != url  # the address saved when the start began, before the pod had one
    assert 0.5 <= seconds < 2


async def test_a_restarted_hub_checks_a_running_pod_at_once(checked) -> None:
    url, _, seconds = await checked(running_pod())

    assert (url, seconds < 0.5) == ("http://10.0.0.7:8888", True)


async def test_an_adopted_pod_not_ready_in_its_starts_time_is_logged(checked, caplog) -> None:
    """The pod gets what its start had left of start_timeout (here 1 s); then the hub's log
    says whose pod, what it waits for and the fix, and JupyterHub stops the server."""
    stuck = pending_pod(conditions=[UNSCHEDULED])

    url, saved, seconds = await checked(stuck, began=4, start_timeout=5)

    assert url == saved
    assert 1 <= seconds < 2
    assert (
        f"nfsuid: user alice: the hub restarted during the start of pod {POD}, which is not"
        " ready: no node was found for it (Unschedulable: 0/3 nodes are available:"
        " 3 Insufficient memory.). It had until start_timeout (5 s) from its start; the hub stops"
        " the server unless it answers within http_timeout. Fix: start the server again;"
    ) in caplog.text


async def test_an_adopted_pod_with_an_address_is_checked_there_even_if_not_ready(
    checked, caplog
) -> None:
    """Not ready when its start's time is up, but with an address: JupyterHub gives it
    http_timeout more to answer there, rather than at the address saved before it had one."""
    starting = running_pod()
    starting["status"]["containerStatuses"][0]["ready"] = False

    url, _, seconds = await checked(starting, began=60, start_timeout=60)

    assert (url, seconds < 0.5) == ("http://10.0.0.7:8888", True)
    assert "container notebook runs but is not ready" in caplog.text


async def test_an_adopted_pod_whose_identity_check_refused_is_logged_at_once(
    checked, caplog
) -> None:
    refusal = "nfsuid: user alice: /data/hpc/home/alice is owned by uid 0 (root). Fix: chown it"
    refused = {"name": "nfsuid-identity", "state": {"terminated": {"exitCode": 1}}}
    refused["state"]["terminated"]["message"] = refusal + "\n"

    url, saved, seconds = await checked(pending_pod(initContainerStatuses=[refused]))

    assert (url, seconds < 0.5) == (saved, True)
    assert refusal in caplog.text


# --- another server's pod that has this server's name -------------------------------------------

BOBS = {"hub.jupyter.org/username": "bob"}
THEIRS = [
    pytest.param(BOBS, id="another-user"),
    pytest.param(ALICES | {"hub.jupyter.org/servername": "gpu"}, id="alices-named-server"),
    pytest.param({}, id="no-owner"),
]
NAME_TAKEN = (
    f"nfsuid: user alice: pod {POD} belongs to another server (of this user or another), and"
    " the hub never deletes or uses another server's pod. Fix: an admin makes"
    " c.KubeSpawner.pod_name_template give every user and server a pod name of its own, as its"
    " default, jupyter-{user_server}, does"
)


def theirs(annotations: dict[str, str]) -> dict[str, Any]:
    """Bob's running lab (uid 2002), or the one `annotations` say, with alice's pod name: a
    pod_name_template that gives two servers one name ("jupyter-{username}" with named
    servers, say)."""
    found = running_pod("theirs")
    found["metadata"]["annotations"] = annotations
    security = {"runAsUser": 2002, "runAsGroup": 3002}
    found["spec"]["containers"][0]["securityContext"] = security
    return found


@pytest.mark.parametrize("annotations", THEIRS)
async def test_another_servers_pod_in_the_way_is_left_and_the_start_refused(
    hub_spawner, reflector: Reflector, annotations: dict[str, str]
) -> None:
    """KubeSpawner deletes whatever pod has the name on a 409 Conflict."""
    api = Api(reflector, POD, create=api_error(409, "Conflict"))
    reflector.pods[POD] = theirs(annotations)
    spawner = hub_spawner(api=api)

    with pytest.raises(NFSUIDError) as raised:
        await conflict(spawner)

    assert api.deletes == []
    assert format_exception(raised.value)[0] == NAME_TAKEN  # bob is not named to alice


@pytest.mark.parametrize("annotations", THEIRS)
async def test_stopping_a_server_leaves_another_servers_pod(
    hub_spawner, reflector: Reflector, annotations: dict[str, str]
) -> None:
    """JupyterHub's stop, KubeSpawner's poll of a lab that exited, and a refusal all stop the
    server: KubeSpawner deletes whatever pod has the name."""
    api = Api(reflector, POD)
    reflector.pods[POD] = theirs(annotations)
    spawner = hub_spawner(api=api)
    spawner.load_state({"pod_name": "jupyter-alice"})

    await asyncio.wait_for(spawner.stop(now=True), 5)

    assert api.deletes == []
    assert POD in reflector.pods


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(NFSUIDError("nfsuid: user alice: refused"), id="refused"),
        pytest.param(api_error(500, "Internal Server Error"), id="failed"),
    ],
)
async def test_a_failed_start_leaves_another_servers_pod(
    hub_spawner, reflector: Reflector, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """Bob's lab takes the name while alice's start fails (refused, or a create that failed):
    neither the refusal's stop nor the reaper deletes it once the hub lets go."""
    api = Api(reflector, POD)
    spawner = hub_spawner({"k8s_api_request_retry_timeout": 1}, api=api)

    async def kube_start(self: KubeSpawner) -> str:
        reflector.pods[POD] = theirs(BOBS)
        raise failure

    monkeypatch.setattr(KubeSpawner, "start", kube_start)
    with pytest.raises(type(failure)):
        await asyncio.wait_for(spawner.start(), 5)
    spawner.server = None
    await asyncio.sleep(1.5)

    assert api.deletes == []
    assert POD in reflector.pods


async def test_another_servers_pod_is_not_this_servers_lab(hub_spawner, reflector, hub_db) -> None:
    """KubeSpawner's poll takes a running pod of the name for the server's lab: it would send
    alice's requests (and her lab's cookies) to bob's lab's address, and the spawner would
    record bob's uid as alice's lab's."""
    reflector.pods[POD] = theirs(BOBS)
    spawner = hub_spawner()
    spawner.db = hub_db()
    spawner.load_state({"pod_name": "jupyter-alice"})
    saved = spawner.server.url

    assert await spawner.poll() == 1  # stopped: JupyterHub stops the server, and its stop
    assert (spawner.server.url, spawner.identity) == (saved, None)
    assert [s.state for s in hub_db().query(orm.Spawner)] == [None]


async def test_a_restarted_hub_checks_a_lab_at_its_own_address_only(checked) -> None:
    url, saved, seconds = await checked(theirs(BOBS))

    assert (url, seconds < 0.5) == (saved, True)

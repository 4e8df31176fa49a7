"""What a start that failed tells its user, and which pods it deletes: API failures, a pod in
the way of a create (409), a hub that gave up or shuts down, a pod not ready within
start_timeout, a refusal whose pod will not go.

KubeSpawner's start and the API server are stand-ins (tests/start_stand_ins.py); the pods are
what a reflector would hold. The end-to-end tier (tests/e2e/test_faults.py) brings the same
faults through a real hub."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from jupyterhub.utils import format_exception
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web

from nfsuidspawner import NFSUIDError, NFSUIDSpawner
from nfsuidspawner.failures import start_failure
from nfsuidspawner.status import not_ready

from .start_stand_ins import (
    INIT_DONE,
    POD,
    UNSCHEDULED,
    Api,
    Events,
    Reflector,
    api_error,
    conflict,
    event,
    pending_pod,
    pod,
)

STATUS_500 = (
    '{"kind": "Status", "status": "Failure", "code": 500, "reason": "InternalError",'
    ' "message": "Internal error occurred: etcdserver: request timed out"}'
)
API_FIX = "Fix: start the server again. If it fails again, check that the Kubernetes API server"


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


# --- a pod that is not ready within start_timeout ----------------------------------------------


IDENTITY_RUNNING = {"name": "nfsuid-identity", "state": {"running": {}}}
IMAGE_PULL = {
    "name": "notebook",
    "ready": False,
    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
}


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


async def test_a_start_not_ready_within_start_timeout_says_what_it_waits_for(
    hub_spawner, reflector: Reflector, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterHub's own timeout raises a TimeoutError with no words ("Spawn failed: "): the
    spawner ends its start first, with a TimeoutError that names the user, the pod, what it
    waits for and the fix. The failed start's pod is deleted once the hub lets go."""
    api = Api(reflector, POD)
    reflector.pods[POD] = pending_pod(initContainerStatuses=[IDENTITY_RUNNING])
    events.add(
        event("earlier", "Killing", "an earlier pod of that name"),
        event("pending", "Pulled", "Container image already present on machine"),
        event("pending", "Started", "Started container nfsuid-identity"),
    )
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

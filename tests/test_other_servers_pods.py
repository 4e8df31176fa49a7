"""Another server's pod that has this server's name (a pod_name_template that gives two servers
one name) is never deleted, never taken for this server's lab, its address or its identity.

KubeSpawner's start, poll and reflectors are stand-ins (tests/start_stand_ins.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.utils import format_exception
from kubespawner import KubeSpawner

from nfsuidspawner import NFSUIDError

from .start_stand_ins import (
    ALICES,
    POD,
    Api,
    Reflector,
    api_error,
    conflict,
    running_pod,
)

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

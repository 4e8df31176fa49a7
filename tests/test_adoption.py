"""A lab whose start a restarted hub found: the identity it records, and where it checks the lab.

The hub's database is a real one on disk; KubeSpawner's poll and reflectors are stand-ins
(tests/start_stand_ins.py)."""

from __future__ import annotations

from typing import Any

import pytest
from jupyterhub import orm
from kubespawner import KubeSpawner

from nfsuidspawner import Identity

from .start_stand_ins import (
    ALICES,
    POD,
    UNSCHEDULED,
    Reflector,
    pending_pod,
    running_pod,
)

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

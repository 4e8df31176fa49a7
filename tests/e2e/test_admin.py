"""An admin starts and stops other users' labs through the REST calls the admin panel makes.

POST and DELETE /hub/api/users/NAME/server (and /servers/NAME for a named server), and
GET /hub/api/users, all with the admin service token. Each lab runs as the owner of its
own user's directory, whoever asked for it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from .conftest import OWNERS, Hub, running_hub

pytestmark = pytest.mark.e2e

OTHERS = ["bob", "qiang.guo03"]
IDS = "import os; print(os.getuid(), os.getgid())"


@pytest.fixture(scope="module")
def hub(sandbox, tmp_path_factory):
    with running_hub(sandbox, tmp_path_factory.mktemp("hub")) as hub:
        yield hub


async def ensure_ready(hub: Hub, user: str, server: str = "") -> None:
    """Start the server unless it already runs: tests that only read share the labs."""
    model = (await hub.user(user))["servers"].get(server)
    if model and model["ready"]:
        return
    if model is None:
        await hub.start(user, server)
    else:
        await hub.wait_ready(user, server)


def server_name(pod: dict[str, Any]) -> str:
    return pod["metadata"]["annotations"].get("hub.jupyter.org/servername", "")


@pytest.fixture
async def others(hub: Hub) -> Hub:
    await asyncio.gather(*(ensure_ready(hub, user) for user in OTHERS))
    return hub


@pytest.fixture(scope="module")
def alice_two_servers(hub: Hub) -> Hub:
    async def start_both() -> None:
        await asyncio.gather(hub.start("alice"), hub.start("alice", "second"))

    asyncio.run(start_both())
    return hub


async def test_user_list_shows_servers_the_admin_started_as_ready(others: Hub) -> None:
    status, users = await others.api("GET", "/users")

    assert status == 200, users
    ready = {u["name"]: u["servers"].get("", {}).get("ready") for u in users}
    assert {name: ready.get(name) for name in OTHERS} == {"bob": True, "qiang.guo03": True}, (
        "\n".join([await others.diagnose(name) for name in OTHERS])
    )


@pytest.mark.parametrize("user", OTHERS)
async def test_lab_started_by_the_admin_runs_as_its_own_users_directory_owner(
    others: Hub, user: str
) -> None:
    out = await others.run_in_lab(user, IDS)

    uid, gid = OWNERS[user]
    assert out.split() == [str(uid), str(gid)], await others.diagnose(user)


async def test_admin_stopping_servers_removes_their_pods(others: Hub) -> None:
    assert all([await others.pods_of(user) for user in OTHERS]), "each user has a pod first"

    await asyncio.gather(*(others.stop(user) for user in OTHERS))

    left = {user: await others.pods_left(user) for user in OTHERS}
    assert left == {user: [] for user in OTHERS}, "\n".join(
        [await others.diagnose(name) for name in OTHERS]
    )


async def test_default_and_named_server_are_ready_at_the_same_time(alice_two_servers: Hub) -> None:
    servers = (await alice_two_servers.user("alice"))["servers"]

    assert {name: s["ready"] for name, s in servers.items()} == {"": True, "second": True}, (
        await alice_two_servers.diagnose("alice")
    )


async def test_default_and_named_server_run_in_different_pods(alice_two_servers: Hub) -> None:
    pods = await alice_two_servers.pods_of("alice")

    by_server = {server_name(p): p["metadata"] for p in pods}
    assert sorted(by_server) == ["", "second"], await alice_two_servers.diagnose("alice")
    assert by_server[""]["name"] != by_server["second"]["name"]
    assert by_server[""]["uid"] != by_server["second"]["uid"]


@pytest.mark.parametrize("server", ["", "second"])
async def test_default_and_named_server_run_as_the_same_directory_owner(
    alice_two_servers: Hub, server: str
) -> None:
    out = await alice_two_servers.run_in_lab("alice", IDS, server=server)

    assert out.split() == ["2001", "3001"], await alice_two_servers.diagnose("alice")


async def test_file_written_through_one_server_is_read_through_the_other(
    alice_two_servers: Hub,
) -> None:
    name = f"e2e-shared-{uuid.uuid4().hex[:8]}.txt"
    async with await alice_two_servers.lab_session("alice") as default:
        async with default.put(
            f"api/contents/{name}",
            json={"type": "file", "format": "text", "content": "written by the default server"},
        ) as r:
            assert r.status in (200, 201), await r.text()
    try:
        async with await alice_two_servers.lab_session("alice", "second") as second:
            async with second.get(f"api/contents/{name}", params={"content": "1"}) as r:
                assert r.status == 200, await r.text()
                model = await r.json()
    finally:
        async with await alice_two_servers.lab_session("alice", "second") as second:
            async with second.delete(f"api/contents/{name}"):
                pass

    assert model["content"] == "written by the default server"

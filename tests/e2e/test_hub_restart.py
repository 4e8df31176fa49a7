"""Labs outlive a hub restart, and the hub still knows who each lab runs as.

The sandbox hub config sets cleanup_servers False, as z2jh does: stopping the hub process
(and its proxy) leaves the pods running. A new hub with the same settings and database
must find them ready, route to them through its new proxy, and keep the identity each
spawn resolved in the spawner state (for the initcontainer source, the one the identity
initContainer reported in its termination message).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from .conftest import OWNERS, Hub

pytestmark = pytest.mark.e2e

USERS = ["alice", "bob"]


async def pod_uids(hub: Hub) -> dict[str, list[str]]:
    return {user: [p["metadata"]["uid"] for p in await hub.pods_of(user)] for user in USERS}


@pytest.fixture(scope="module")
def restarted(hub: Hub) -> dict[str, list[str]]:
    """Start the labs, restart the hub process; the labs' pod uids from before the restart."""

    async def start_labs() -> dict[str, list[str]]:
        await asyncio.gather(*(hub.start(user) for user in USERS))
        return await pod_uids(hub)

    before = asyncio.run(start_labs())
    hub.process.stop()
    assert not asyncio.run(answers(hub.url)), "the proxy still answers after the hub stopped"
    hub.process.start()
    return before


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)):
                return True
    except aiohttp.ClientConnectionError:
        return False


def spawner_state(hub: Hub, user: str) -> dict:
    """The default server's state as the hub stored it in its database."""
    db = Path(hub.settings.state_dir) / "jupyterhub.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        row = connection.execute(
            "SELECT spawners.state FROM spawners JOIN users ON spawners.user_id = users.id"
            " WHERE users.name = ? AND spawners.name = ''",
            (user,),
        ).fetchone()
    assert row is not None, f"no default spawner of {user} in {db}"
    return json.loads(row[0] or "{}")


@pytest.mark.parametrize("user", USERS)
async def test_server_is_listed_ready_after_the_restart(restarted, hub: Hub, user: str) -> None:
    # The new hub checks its spawners while it starts; allow that to finish.
    model = await hub.wait_ready(user, timeout=30)

    assert model["ready"] is True


async def test_labs_keep_their_pods_across_the_restart(restarted, hub: Hub) -> None:
    after = await pod_uids(hub)

    assert all(len(uids) == 1 for uids in restarted.values()), restarted
    assert after == restarted, "\n".join([await hub.diagnose(user) for user in USERS])


@pytest.mark.parametrize("user", USERS)
async def test_lab_answers_through_the_new_proxy(restarted, hub: Hub, user: str) -> None:
    await hub.wait_ready(user, timeout=30)

    out = await hub.run_in_lab(user, "import os; print(os.getuid())")

    assert out.strip() == str(OWNERS[user][0]), await hub.diagnose(user)


@pytest.mark.parametrize("user", USERS)
async def test_spawner_state_keeps_the_resolved_identity(restarted, hub: Hub, user: str) -> None:
    await hub.wait_ready(user, timeout=30)

    state = spawner_state(hub, user)

    uid, gid = OWNERS[user]
    assert state.get("nfsuid_identity") == {"uid": uid, "gid": gid}, state


async def test_servers_started_before_the_restart_stop_cleanly(restarted, hub: Hub) -> None:
    """Runs last in this module: it ends the labs the other tests read."""
    await asyncio.gather(*(hub.stop(user) for user in USERS))

    left = {user: await hub.pods_left(user) for user in USERS}
    assert left == {user: [] for user in USERS}, "\n".join(
        [await hub.diagnose(user) for user in USERS]
    )

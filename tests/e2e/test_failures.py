"""A lab that must not start fails at once, says why in the hub, and leaves nothing behind.

For both identity sources:

- ``rooted``: the directory is owned by root. The hub source stats it on the hub's own mount
  of the share, so its message names the hub's path (here the export itself); the
  initContainer names the path the lab would see, /data/hpc/home/rooted.
- ``ghost``: the user has no directory. Both sources say it does not exist, and nothing is
  created on the share: no container mounts the user's subPath before the check passed (a
  kubelet creates a missing subPath, root-owned, on the share).
- ``asmith``: home/asmith is a link to bob's directory. A kubelet follows a link in a subPath
  that stays inside the volume, so asmith's lab would have run as bob, on bob's files.
- an admin environment that sets GRANT_SUDO fails before any pod is created, naming it.

The hub's start timeout is 90 s; a refusal must arrive in seconds, not by that timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import NAMESPACE, Hub, SandboxInfo, running_hub, source_settings

pytestmark = pytest.mark.e2e

START_TIMEOUT = 90  # c.NFSUIDSpawner.start_timeout in the sandbox hub config
FAST = 30


@dataclass
class FailedSpawn:
    """What the hub and the sandbox showed about one spawn that should fail."""

    post_status: int
    post_body: Any
    seconds: float
    events: list[dict[str, Any]]
    model: dict[str, Any]
    pods_added: list[str]
    pods_left: list[str]
    share_changed: bool
    diagnosis: str

    @property
    def final(self) -> dict[str, Any]:
        return self.events[-1] if self.events else {}


async def pods_resource_version(sandbox: SandboxInfo) -> str:
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {sandbox.admin_token}"}
    ) as session:
        async with session.get(f"{sandbox.url}/api/v1/namespaces/{NAMESPACE}/pods") as r:
            r.raise_for_status()
            return (await r.json())["metadata"]["resourceVersion"]


async def pods_added_since(sandbox: SandboxInfo, resource_version: str, user: str) -> list[str]:
    """Names of the user's pods created after `resource_version`, from the API's watch history."""
    params = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": "1"}
    added = []
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {sandbox.admin_token}"}
    ) as session:
        async with session.get(
            f"{sandbox.url}/api/v1/namespaces/{NAMESPACE}/pods", params=params
        ) as r:
            r.raise_for_status()
            async for line in r.content:
                event = json.loads(line)
                assert event["type"] != "ERROR", f"the pod watch failed: {event}"
                meta = event["object"]["metadata"]
                if (
                    event["type"] == "ADDED"
                    and meta.get("annotations", {}).get("hub.jupyter.org/username") == user
                ):
                    added.append(meta["name"])
    return added


def home_entries(share: Path) -> list[tuple[str, int]]:
    """The share's home directory as `ls -la` would show it: entries and their mtimes."""
    home = share / "home"
    return sorted((p.name, p.lstat().st_mtime_ns) for p in [home, *home.iterdir()])


async def fail_spawn(hub: Hub, user: str, share: Path) -> FailedSpawn:
    """POST the start as the admin panel does, then read the spawn's progress to its end."""
    before = home_entries(share)
    since = await pods_resource_version(hub.sandbox)
    began = time.monotonic()
    status, body = await hub.api("POST", f"/users/{user}/server", json={})
    events = await asyncio.wait_for(hub.progress(user), START_TIMEOUT + 30)
    seconds = time.monotonic() - began
    left = await hub.pods_left(user, timeout=15)
    return FailedSpawn(
        post_status=status,
        post_body=body,
        seconds=seconds,
        events=events,
        model=await hub.user(user),
        pods_added=await pods_added_since(hub.sandbox, since, user),
        pods_left=left,
        share_changed=home_entries(share) != before,
        diagnosis=await hub.diagnose(user),
    )


def expected_refusal(source: str, user: str, share: Path) -> str:
    """The refusal's first sentence, up to its "Fix:"."""
    problem = {"ghost": "does not exist", "asmith": "is a symlink"}.get(
        user, "is owned by uid 0 (root)"
    )
    # Both sources name the directory as users know it, whatever the hub's mount is.
    return f"nfsuid: user {user}: /data/hpc/home/{user} {problem}. Fix: "


@pytest.fixture(scope="module", params=["initcontainer", "hub"])
def source(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def hub(source, sandbox, share, tmp_path_factory):
    with running_hub(
        sandbox, tmp_path_factory.mktemp("hub"), spawner=source_settings(source, share)
    ) as hub:
        yield hub


@pytest.fixture(scope="module", params=["rooted", "ghost", "asmith"])
def refused(request, hub: Hub, share: Path) -> tuple[str, FailedSpawn]:
    user = request.param
    return user, asyncio.run(fail_spawn(hub, user, share))


@pytest.fixture(scope="module")
def sudo_hub(source, sandbox, share, tmp_path_factory):
    settings = source_settings(source, share) | {"environment": {"GRANT_SUDO": "yes"}}
    with running_hub(sandbox, tmp_path_factory.mktemp("sudo-hub"), spawner=settings) as hub:
        yield hub


@pytest.fixture(scope="module")
def sudo_refused(sudo_hub: Hub, share: Path) -> FailedSpawn:
    return asyncio.run(fail_spawn(sudo_hub, "alice", share))


def test_refusal_arrives_in_seconds_not_at_the_start_timeout(refused) -> None:
    user, spawn = refused

    assert spawn.final.get("failed") is True, spawn.diagnosis
    assert spawn.seconds < FAST, f"{user} failed after {spawn.seconds:.1f} s\n{spawn.diagnosis}"


def test_hub_shows_the_user_path_and_reason(refused, source, share) -> None:
    user, spawn = refused

    message = spawn.final.get("message", "")
    assert message.startswith("Spawn failed: " + expected_refusal(source, user, share)), (
        f"{message!r}\n{spawn.diagnosis}"
    )
    assert "\n" not in message


def test_admin_start_request_answers_with_the_refusal(refused, source, share) -> None:
    """The admin panel shows the POST's error; the refusal comes well within slow_spawn_timeout."""
    user, spawn = refused

    message = spawn.post_body.get("message", "") if isinstance(spawn.post_body, dict) else ""
    # 400: a refusal of this request (like JupyterHub 6's SpawnException), not a hub fault.
    assert spawn.post_status == 400, f"{spawn.post_status} {spawn.post_body!r}\n{spawn.diagnosis}"
    assert message.startswith(expected_refusal(source, user, share)), spawn.post_body


def test_only_the_initcontainer_source_creates_a_pod_to_find_the_refusal(refused, source) -> None:
    """The hub source refuses before the pod exists; the initContainer refuses inside it."""
    user, spawn = refused

    expected = [f"jupyter-{user}"] if source == "initcontainer" else []
    assert spawn.pods_added == expected, spawn.diagnosis


def test_user_has_no_running_or_pending_server_after_the_refusal(refused) -> None:
    _, spawn = refused

    assert (spawn.model["servers"], spawn.model.get("pending")) == ({}, None), spawn.diagnosis


def test_the_refusal_leaves_the_share_unchanged(refused) -> None:
    """Same entries, same mtimes: nothing created (ghost), nothing mounted through a link."""
    _, spawn = refused

    assert not spawn.share_changed, spawn.diagnosis


def test_no_pod_of_the_refused_user_is_left(refused) -> None:
    _, spawn = refused

    assert spawn.pods_left == [], spawn.diagnosis


def test_environment_setting_grant_sudo_fails_the_spawn_naming_it(sudo_refused) -> None:
    message = sudo_refused.final.get("message", "")

    assert sudo_refused.final.get("failed") is True, sudo_refused.diagnosis
    assert message.startswith(
        "Spawn failed: nfsuid: user alice: the environment sets GRANT_SUDO "
    ), f"{message!r}\n{sudo_refused.diagnosis}"
    assert "unsafe_allow_identity_overrides" in message
    assert sudo_refused.seconds < FAST


def test_environment_setting_grant_sudo_creates_no_pod(sudo_refused) -> None:
    assert (sudo_refused.pods_added, sudo_refused.pods_left) == ([], []), sudo_refused.diagnosis

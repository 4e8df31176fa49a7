"""The "hub" identity source against a share whose server never answers.

A FUSE mount that nobody serves stands in for a hung NFS server: a stat of any path in it
(the mount root included) blocks in the kernel until the connection is aborted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nfsuidspawner import NFSUIDError, NFSUIDSpawner

from .conftest import SHARE_OWNERS, stat_threads

TIMEOUT = 1.0
SLACK = 3.0

MakeSpawner = Callable[..., NFSUIDSpawner]


def _hub_spawner(make_spawner: MakeSpawner, share: str, username: str) -> NFSUIDSpawner:
    config = {"identity_source": "hub", "hub_share_path": share, "identity_timeout": TIMEOUT}
    return make_spawner(config, username=username)


async def test_hung_stat_fails_the_spawn_after_the_timeout_naming_user_path_and_fix(
    hung_share: str, make_spawner: MakeSpawner
) -> None:
    spawner = _hub_spawner(make_spawner, hung_share, "alice")

    started = time.monotonic()
    with pytest.raises(NFSUIDError) as refused:
        await spawner.get_pod_manifest()
    took = time.monotonic() - started

    assert TIMEOUT <= took < TIMEOUT + SLACK
    assert str(refused.value) == (
        f"nfsuid: user alice: stat of {hung_share}/home/alice did not answer within 1 s."
        " Fix: check that the NFS server is up and the hub's mount of the share is"
        " healthy, or raise c.NFSUIDSpawner.identity_timeout"
    )
    assert refused.value.jupyterhub_message == str(refused.value)


async def test_event_loop_keeps_serving_other_spawns_while_a_stat_hangs(
    hung_share: str, hub_share: Path, make_spawner: MakeSpawner
) -> None:
    hung = _hub_spawner(make_spawner, hung_share, "bob")
    healthy = _hub_spawner(make_spawner, str(hub_share), "alice")
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    hung_spawn = asyncio.create_task(hung.get_pod_manifest())
    started = time.monotonic()
    try:
        await asyncio.sleep(TIMEOUT / 4)
        pod = await healthy.get_pod_manifest()
        healthy_done_during_hang = not hung_spawn.done()
        with pytest.raises(NFSUIDError):
            await hung_spawn
        hang = time.monotonic() - started
    finally:
        ticker.cancel()
        hung_spawn.cancel()

    assert healthy_done_during_hang
    notebook = next(c for c in pod.spec.containers if c.name == "notebook")
    context = notebook.security_context
    assert (context.run_as_user, context.run_as_group) == SHARE_OWNERS["alice"] == (2001, 3001)
    assert max(gaps) < 0.2, f"the loop stalled for {max(gaps):.3f} s"
    assert sum(gaps) > hang - 0.2  # the ticker ran through the whole hang


async def test_hung_stat_leaves_the_default_executor_free(
    hung_share: str, make_spawner: MakeSpawner
) -> None:
    # One worker: a stat stuck in the default executor would leave nothing to answer.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    spawner = _hub_spawner(make_spawner, hung_share, "alice")

    with pytest.raises(NFSUIDError):
        await spawner.get_pod_manifest()
    started = time.monotonic()
    answer = await asyncio.wait_for(loop.run_in_executor(None, lambda: 1), TIMEOUT)

    assert answer == 1
    assert time.monotonic() - started < 0.5


async def test_retries_while_the_server_hangs_share_one_stuck_thread(
    hung_share: str, make_spawner: MakeSpawner
) -> None:
    async def attempt() -> None:
        with pytest.raises(NFSUIDError, match="did not answer within"):
            await _hub_spawner(make_spawner, hung_share, "bob").get_pod_manifest()

    await attempt()
    await asyncio.gather(attempt(), attempt())

    assert len(stat_threads()) == 1

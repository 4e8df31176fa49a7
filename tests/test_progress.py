"""The spawn page's progress: what the spawner decided, for both sources, as it decides it.

KubeSpawner's start, stop and progress are replaced by stand-ins that behave like them
without a cluster; progress is read as JupyterHub's progress API reads it, until the
start has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.utils import iterate_until
from kubespawner import KubeSpawner

from nfsuidspawner import NFSUIDError, NFSUIDSpawner, status

from .conftest import source_config
from .start_stand_ins import Events, event

CHECKING = "nfsuid: checking /data/hpc/home/{0}, the directory of {0}"
RUNS_AS = "nfsuid: alice runs as 2001:3001, the owner of /data/hpc/home/alice"
REFUSAL = "nfsuid: user carol: /data/hpc/home/carol is owned by uid 0 (root). Fix: chown it"


async def kube_progress(self: KubeSpawner) -> Any:
    """Like KubeSpawner's: its events, then a poll each second until its start has ended."""
    yield {"progress": 30, "message": "Scheduled"}
    while not (self._start_future and self._start_future.done()):
        await asyncio.sleep(1)


async def kube_stop(self: KubeSpawner, now: bool = False) -> None:
    await asyncio.sleep(0.01)  # the API's delete


def init_pod(exit_code: int, message: str) -> dict[str, Any]:
    """A pending pod whose identity initContainer has ended."""
    terminated = {"exitCode": exit_code, "message": message}
    init = {"name": "nfsuid-identity", "state": {"terminated": terminated}}
    return {"metadata": {}, "status": {"phase": "Pending", "initContainerStatuses": [init]}}


async def init_resolves(spawner: KubeSpawner) -> str:
    await spawner.get_pod_manifest()
    for _ in range(3):  # KubeSpawner polls the pod until it runs
        spawner.is_pod_running(init_pod(0, "nfsuid: user alice runs as 2001:3001\n"))
        await asyncio.sleep(0.01)
    return "http://127.0.0.1:8888"


async def init_refuses(spawner: KubeSpawner) -> str:
    await spawner.get_pod_manifest()
    await asyncio.sleep(0.01)
    spawner.is_pod_running(init_pod(1, REFUSAL + "\n"))
    return "never"


async def hub_builds_the_pod(spawner: KubeSpawner) -> str:
    await spawner.get_pod_manifest()
    return "http://127.0.0.1:8888"


@pytest.fixture
def spawn(make_spawner, monkeypatch) -> Callable[..., Awaitable[tuple[list[str], Any]]]:
    """Start a lab whose KubeSpawner start runs `work`: its progress messages and outcome."""
    monkeypatch.setattr(KubeSpawner, "progress", kube_progress)
    monkeypatch.setattr(KubeSpawner, "stop", kube_stop)

    async def run(
        config: dict[str, Any], user: str, work: Callable[[KubeSpawner], Awaitable[str]]
    ) -> tuple[list[str], Any]:
        def kube_start(self: KubeSpawner) -> asyncio.Future:
            self._start_future = asyncio.ensure_future(work(self))
            return self._start_future

        monkeypatch.setattr(KubeSpawner, "start", kube_start)
        spawner = make_spawner(config, username=user)
        await spawner.run_auth_state_hook(None)
        started = spawner.start()
        messages = [e["message"] async for e in iterate_until(started, spawner.progress())]
        outcome = (await asyncio.gather(started, return_exceptions=True))[0]
        return messages, outcome

    return run


def notes(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("nfsuid:")]


async def test_initcontainer_source_shows_the_check_then_the_owner_once(spawn) -> None:
    messages, outcome = await spawn({"identity_source": "initcontainer"}, "alice", init_resolves)

    assert outcome == "http://127.0.0.1:8888"
    assert notes(messages) == [CHECKING.format("alice"), RUNS_AS]
    assert "Scheduled" in messages


async def test_initcontainer_refusal_is_shown_after_kubespawners_events(spawn) -> None:
    messages, outcome = await spawn({"identity_source": "initcontainer"}, "carol", init_refuses)

    assert isinstance(outcome, NFSUIDError) and str(outcome) == REFUSAL
    assert notes(messages) == [CHECKING.format("carol"), REFUSAL]
    assert messages.index("Scheduled") < messages.index(REFUSAL)


async def test_each_version_of_the_pod_is_read_once_however_often_it_is_polled(
    spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[dict[str, Any]] = []
    read = status.init_failure
    monkeypatch.setattr(status, "init_failure", lambda pod: reads.append(pod) or read(pod))
    first, second = (init_pod(0, "nfsuid: user alice runs as 2001:3001\n") for _ in range(2))

    async def polls(spawner: KubeSpawner) -> str:
        await spawner.get_pod_manifest()
        for pod in (first, first, first, second, second):
            spawner.is_pod_running(pod)
        return "http://127.0.0.1:8888"

    messages, _ = await spawn({"identity_source": "initcontainer"}, "alice", polls)

    assert [id(pod) for pod in reads] == [id(first), id(second)]
    assert notes(messages) == [CHECKING.format("alice"), RUNS_AS]


async def test_a_refused_pod_is_refused_however_often_it_is_polled(spawn) -> None:
    refused, raised = init_pod(1, REFUSAL + "\n"), []

    async def polls(spawner: KubeSpawner) -> str:
        await spawner.get_pod_manifest()
        for _ in range(2):
            try:
                spawner.is_pod_running(refused)
            except NFSUIDError as e:
                raised.append(str(e))
        return "http://127.0.0.1:8888"

    await spawn({"identity_source": "initcontainer"}, "carol", polls)

    assert raised == [REFUSAL, REFUSAL]


async def test_hub_source_shows_the_check_then_the_owner(spawn, hub_share: Path) -> None:
    config = source_config("hub", hub_share)

    messages, outcome = await spawn(config, "alice", hub_builds_the_pod)

    assert outcome == "http://127.0.0.1:8888"
    assert notes(messages) == [CHECKING.format("alice"), RUNS_AS]


async def test_hub_source_refusal_is_shown_with_its_reason(spawn, hub_share: Path) -> None:
    (hub_share / "home" / "carol").mkdir()  # owned by root, as this test runs
    config = source_config("hub", hub_share)

    messages, outcome = await spawn(config, "carol", hub_builds_the_pod)

    assert isinstance(outcome, NFSUIDError)
    assert "/data/hpc/home/carol is owned by uid 0 (root). Fix: " in str(outcome)
    assert notes(messages) == [CHECKING.format("carol"), str(outcome)]


def alices_page(reflector: Events, last: str | None = None, pod: str = "jupyter-alice") -> Any:
    """What reads the events of alice's pod: her spawner, as KubeSpawner's `events` sees it."""
    return SimpleNamespace(
        event_reflector=reflector, namespace="jupyter-system", pod_name=pod, _last_event=last
    )


def test_a_pods_events_are_kubespawners_though_only_its_own_are_sorted() -> None:
    tied = event("p", "Pulled", "", when="2026-11-29T09:00:01Z")  # made first, stored later
    reflector = Events()
    reflector.add(
        a3 := event("p", "Started", "", when="2026-11-29T09:00:03Z"),
        event("q", "Pulled", "", pod="jupyter-bob", when="2026-11-29T09:00:01Z"),
        a1 := event("p", "Scheduled", "", when="2026-11-29T09:00:01Z"),
        a2 := event("p", "Created", "")
        | {"lastTimestamp": None, "eventTime": "2026-11-29T09:00:02.5Z"},
        tied,
        a5 := event("p", "Killing", "", when="2026-11-29T09:00:05Z")
        | {"eventTime": "2026-11-29T09:00:00.5Z"},  # lastTimestamp wins
        event("q", "Scheduled", "", pod="jupyter-bob", when="2026-11-29T09:00:00Z"),
        event("r", "Scheduled", "", pod="jupyter-alice--x", when="2026-11-29T09:00:00Z"),
        event("s", "Scheduled", "", pod="jupyter-alic", when="2026-11-29T09:00:00Z"),
        a4 := event("p", "Pulled", "", when="2026-11-29T09:00:04Z"),
    )
    uids = [e["metadata"]["uid"] for e in reflector.resources.values()]

    for pod in ("jupyter-alice", "jupyter-bob", "jupyter-alice--x", "jupyter-carol"):
        for last in (None, *uids, "gone"):
            page = alices_page(reflector, last, pod)
            assert NFSUIDSpawner.events.fget(page) == KubeSpawner.events.fget(page), (pod, last)
    page = alices_page(reflector, last=a1["metadata"]["uid"])
    assert NFSUIDSpawner.events.fget(page) == [tied, a2, a3, a4, a5]


def test_a_spawn_page_shows_no_event_of_a_same_named_pod_in_another_namespace() -> None:
    """With enable_user_namespaces, KubeSpawner's reflector watches every namespace, and a
    pod_name_template such as `jupyter` gives every user's pod one name."""
    reflector = Events()
    alices = event("p", "FailedMount", "mount of /export/home/alice failed")
    bobs = event("q", "FailedMount", "mount of /export/home/bob failed", namespace="user-bob")
    reflector.add(alices, bobs)

    assert NFSUIDSpawner.events.fget(alices_page(reflector)) == [alices]
    assert KubeSpawner.events.fget(alices_page(reflector)) == [alices, bobs]  # the reason

"""The sandbox API server's fault switch (nfsuidspawner/sandbox/faults.py), through its admin
route and kubernetes_asyncio clients as the hub and the kubelet would use them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiException, CoreV1Api
from kubernetes_asyncio.watch import Watch

from nfsuidspawner.sandbox.apiserver import ApiServer
from nfsuidspawner.sandbox.kubeclient import ApiClient

from .conftest import HUB_NAMESPACE, MakeClient

NS = HUB_NAMESPACE


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "notebook", "image": "busybox"}]},
    }


async def control(
    server: ApiServer, method: str, path: str, token: str = "admin-token", **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.request(method, server.url + path, **kwargs) as response:
            return response.status, await response.json()


async def set_faults(server: ApiServer, *rules: dict[str, Any]) -> None:
    status, body = await control(server, "POST", "/sandbox/faults", json={"rules": list(rules)})
    assert status == 200, body


def names(server: ApiServer) -> list[str]:
    return [p["metadata"]["name"] for p in server.objects("pods")]


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def hub(apiserver: ApiServer, make_client: MakeClient) -> CoreV1Api:
    return await make_client(apiserver, token="hub-token")


# --- the switch ---


async def test_only_the_admin_may_set_faults(apiserver: ApiServer) -> None:
    status, body = await control(apiserver, "GET", "/sandbox/faults", token="hub-token")

    assert (status, body["reason"]) == (403, "Forbidden")


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"action": "explode"}, "action must be one of"),
        ({"action": "error", "status": 404}, "status must be a 5xx"),
        ({"action": "break"}, "only a watch can break"),
        ({"action": "error", "verb": "watch", "when": "after"}, "a watch has no answer"),
        ({"action": "delay", "when": "late"}, "only an error or a drop"),
        ({"action": "drop", "fraction": 0}, "fraction must be in (0, 1]"),
        ({"action": "drop", "colour": "red"}, "unknown fields ['colour']"),
    ],
    ids=["action", "status", "break-not-watch", "watch-after", "late-delay", "fraction", "field"],
)
async def test_a_bad_rule_is_refused_naming_the_problem(
    apiserver: ApiServer, rule: dict[str, Any], problem: str
) -> None:
    status, body = await control(apiserver, "POST", "/sandbox/faults", json={"rules": [rule]})

    assert status == 400
    assert problem in body["message"]


async def test_rules_report_how_often_they_matched_and_fired(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    await set_faults(apiserver, {"action": "error", "count": 2})
    for i in range(4):
        with contextlib.suppress(ApiException):
            await hub.create_namespaced_pod(NS, pod(f"p{i}"))

    _, state = await control(apiserver, "GET", "/sandbox/faults")

    assert (state["rules"][0]["matched"], state["rules"][0]["fired"]) == (2, 2)
    assert names(apiserver) == ["p2", "p3"]


async def test_a_fraction_is_drawn_from_the_seed(apiserver: ApiServer, hub: CoreV1Api) -> None:
    async def failures() -> list[int]:
        await set_faults(apiserver, {"action": "error", "verb": "list", "fraction": 0.5, "seed": 3})
        failed = []
        for i in range(20):
            try:
                await hub.list_namespaced_pod(NS)
            except ApiException:
                failed.append(i)
        return failed

    first, second = await failures(), await failures()

    assert first == second
    assert 0 < len(first) < 20


async def test_clearing_the_rules_ends_the_faults(apiserver: ApiServer, hub: CoreV1Api) -> None:
    await set_faults(apiserver, {"action": "error"})
    await control(apiserver, "DELETE", "/sandbox/faults")

    await hub.create_namespaced_pod(NS, pod("a"))

    assert names(apiserver) == ["a"]


# --- pod creates ---


@pytest.mark.parametrize("code", [500, 503])
async def test_a_create_answered_with_an_error_makes_nothing(
    apiserver: ApiServer, hub: CoreV1Api, code: int
) -> None:
    await set_faults(apiserver, {"action": "error", "status": code, "count": 1})

    with pytest.raises(ApiException) as error:
        await hub.create_namespaced_pod(NS, pod("a"))

    assert error.value.status == code
    assert names(apiserver) == []
    await hub.create_namespaced_pod(NS, pod("a"))  # only the next one
    assert names(apiserver) == ["a"]


async def test_an_error_after_the_create_leaves_the_pod(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    await set_faults(apiserver, {"action": "error", "status": 503, "when": "after"})

    with pytest.raises(ApiException):
        await hub.create_namespaced_pod(NS, pod("a"))

    assert names(apiserver) == ["a"]


async def test_a_late_create_lands_after_its_client_was_told_it_failed(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    await set_faults(apiserver, {"action": "drop", "when": "late", "seconds": 0.3})

    with pytest.raises(aiohttp.ClientError):
        await hub.create_namespaced_pod(NS, pod("a"))
    assert names(apiserver) == []

    await eventually(lambda: names(apiserver) == ["a"])


async def test_a_create_answered_503_lands_late(apiserver: ApiServer, hub: CoreV1Api) -> None:
    await set_faults(apiserver, {"action": "error", "status": 503, "when": "late", "seconds": 0.3})

    with pytest.raises(ApiException) as error:
        await hub.create_namespaced_pod(NS, pod("a"))
    assert (error.value.status, names(apiserver)) == (503, [])

    await eventually(lambda: names(apiserver) == ["a"])


async def test_a_dropped_create_makes_nothing(apiserver: ApiServer, hub: CoreV1Api) -> None:
    await set_faults(apiserver, {"action": "drop"})

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await hub.create_namespaced_pod(NS, pod("a"))

    assert names(apiserver) == []


async def test_a_delayed_create_is_made_after_its_client_gave_up(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    """As KubeSpawner's 3 s request timeout meets a slow API server: the create still lands."""
    await set_faults(apiserver, {"action": "delay", "seconds": 0.5})

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(hub.create_namespaced_pod(NS, pod("a")), 0.1)
    assert names(apiserver) == []

    await eventually(lambda: names(apiserver) == ["a"])


async def test_faults_apply_only_to_their_identity_and_name(
    apiserver: ApiServer, hub: CoreV1Api, admin: CoreV1Api
) -> None:
    await set_faults(apiserver, {"action": "error", "name": "jupyter-u0*"})

    await admin.create_namespaced_pod(NS, pod("jupyter-u01"))  # the kubelet and tests: admin
    await hub.create_namespaced_pod(NS, pod("jupyter-v01"))
    with pytest.raises(ApiException):
        await hub.create_namespaced_pod(NS, pod("jupyter-u02"))

    assert sorted(names(apiserver)) == ["jupyter-u01", "jupyter-v01"]


# --- watches ---


async def watch_once(api: CoreV1Api, resource_version: str, timeout: int = 5) -> list[str]:
    seen = []
    async with Watch().stream(
        api.list_namespaced_pod, NS, resource_version=resource_version, timeout_seconds=timeout
    ) as stream:
        async for event in stream:
            seen.append(event["raw_object"]["metadata"]["name"])
    return seen


async def test_the_first_watches_fail_and_then_watches_work(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    await set_faults(apiserver, {"action": "error", "verb": "watch", "count": 2})
    await hub.create_namespaced_pod(NS, pod("a"))
    listed = await hub.list_namespaced_pod(NS)  # lists are not watches

    for _ in range(2):
        with pytest.raises(ApiException) as error:
            await watch_once(hub, "0", timeout=1)
        assert error.value.status == 500

    assert [p.metadata.name for p in listed.items] == ["a"]
    assert await watch_once(hub, "0", timeout=1) == ["a"]


async def test_a_watch_breaks_mid_stream(apiserver: ApiServer, hub: CoreV1Api) -> None:
    await set_faults(apiserver, {"action": "break", "verb": "watch", "seconds": 0.3})
    await hub.create_namespaced_pod(NS, pod("a"))

    began = time.monotonic()
    with pytest.raises(aiohttp.ClientPayloadError):
        await watch_once(hub, "0", timeout=10)

    assert time.monotonic() - began < 5


async def test_open_watches_are_cut_on_request(apiserver: ApiServer, hub: CoreV1Api) -> None:
    watching = asyncio.ensure_future(watch_once(hub, "0", timeout=10))
    await eventually(lambda: bool(apiserver.faults._watches))

    status, body = await control(
        apiserver, "POST", "/sandbox/watches/break", json={"identity": "hub"}
    )

    assert (status, body) == (200, {"broken": 1})
    with pytest.raises(aiohttp.ClientPayloadError):
        await watching


# --- restarts ---


async def test_a_restart_keeps_the_objects_and_the_address(
    apiserver: ApiServer, hub: CoreV1Api
) -> None:
    url = apiserver.url
    created = await hub.create_namespaced_pod(NS, pod("a"))

    status, _ = await control(apiserver, "POST", "/sandbox/restart", json={"down_seconds": 0.3})
    assert status == 202
    await asyncio.sleep(0.15)
    with pytest.raises(aiohttp.ClientConnectionError):
        await control(apiserver, "GET", "/sandbox/faults")
    await eventually(lambda: apiserver.faults.restarts == 1)

    assert apiserver.url == url
    assert [p.metadata.uid for p in (await hub.list_namespaced_pod(NS)).items] == [
        created.metadata.uid
    ]


async def test_a_watch_resumes_after_a_restart_from_its_resource_version(
    apiserver: ApiServer, hub: CoreV1Api, admin: CoreV1Api
) -> None:
    version = (await hub.list_namespaced_pod(NS)).metadata.resource_version
    watching = asyncio.ensure_future(watch_once(hub, version, timeout=10))
    await eventually(lambda: bool(apiserver.faults._watches))

    await apiserver.restart(down_seconds=0.1)
    assert await watching == []  # the open watch ended, as kube-apiserver's do
    await admin.create_namespaced_pod(NS, pod("after"))

    assert await watch_once(hub, version, timeout=1) == ["after"]


async def test_the_kubelets_requests_wait_for_a_restarting_api_server(
    apiserver: ApiServer,
) -> None:
    """A status update or a volume lookup made while the server restarts is not lost."""
    client = ApiClient(apiserver.url, "admin-token")
    client.open()
    try:
        restart = asyncio.ensure_future(apiserver.restart(down_seconds=1))
        await asyncio.sleep(0.3)  # down now

        namespace = await client.request("GET", f"/api/v1/namespaces/{NS}")

        assert namespace["metadata"]["name"] == NS
        await restart
    finally:
        await client.close()


async def test_the_kubelets_requests_give_up_after_their_time(apiserver: ApiServer) -> None:
    client = ApiClient(apiserver.url, "admin-token", retry_for=0.5)
    client.open()
    try:
        await apiserver.stop()
        began = time.monotonic()
        with pytest.raises(aiohttp.ClientConnectorError):
            await client.request("GET", f"/api/v1/namespaces/{NS}")
        assert 0.2 < time.monotonic() - began < 3
    finally:
        await client.close()

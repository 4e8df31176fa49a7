"""The sandbox API server, driven through kubernetes_asyncio and KubeSpawner's reflectors."""

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiException, Configuration, CoreV1Api, V1DeleteOptions
from kubernetes_asyncio.config import kube_config
from kubernetes_asyncio.watch import Watch
from kubespawner import clients
from kubespawner.objects import make_pod
from kubespawner.spawner import EventReflector, PodReflector

from nfsuidspawner.sandbox.apiserver import ApiServer

from .conftest import HUB_NAMESPACE, MakeClient, MakeServer

NS = HUB_NAMESPACE


def pod(name: str, labels: dict[str, str] | None = None, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "notebook", "image": "busybox", **container}]},
    }


def event(name: str, involved_kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": {"kind": involved_kind, "name": "x", "namespace": NS},
        "reason": "Scheduled",
        "message": "hello",
        "type": "Normal",
    }


def pv(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Ti"},
            "accessModes": ["ReadWriteMany"],
            "nfs": {"server": "nfs.example", "path": "/hpc"},
        },
    }


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


async def collect(
    api: CoreV1Api, resource_version: str, count: int, timeout: int = 5, **kwargs: Any
) -> list[tuple[str, str]]:
    """(type, name) of the first `count` pod watch events after resource_version.

    Fewer if the watch ends first (timeoutSeconds).
    """
    seen: list[tuple[str, str]] = []
    async with Watch().stream(
        api.list_namespaced_pod,
        NS,
        resource_version=resource_version,
        timeout_seconds=timeout,
        **kwargs,
    ) as stream:
        async for e in stream:
            seen.append((e["type"], e["raw_object"]["metadata"]["name"]))
            if len(seen) == count:
                break
    return seen


async def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_created_pod_gets_uid_resource_version_timestamp_and_pending_status(
    admin: CoreV1Api,
) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    assert created.metadata.uid
    assert created.metadata.resource_version.isdigit()
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == NS
    assert created.status.phase == "Pending"


async def test_get_returns_the_created_pod(admin: CoreV1Api) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    read = await admin.read_namespaced_pod("a", NS)
    assert read.metadata.uid == created.metadata.uid


async def test_list_returns_pods_and_the_current_resource_version(admin: CoreV1Api) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    last = await admin.create_namespaced_pod(NS, pod("b"))
    listed = await admin.list_namespaced_pod(NS)
    assert [p.metadata.name for p in listed.items] == ["a", "b"]
    assert listed.metadata.resource_version == last.metadata.resource_version


async def test_list_across_namespaces_returns_every_namespace(admin: CoreV1Api) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    await admin.create_namespaced_pod("default", pod("b"))
    listed = await admin.list_pod_for_all_namespaces()
    assert {(p.metadata.namespace, p.metadata.name) for p in listed.items} == {
        ("default", "b"),
        (NS, "a"),
    }


async def test_delete_without_graceful_deletion_removes_the_pod_at_once(admin: CoreV1Api) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    await admin.delete_namespaced_pod("a", NS, grace_period_seconds=30)
    with pytest.raises(ApiException) as error:
        await admin.read_namespaced_pod("a", NS)
    assert error.value.status == 404
    assert status_of(error.value)["message"] == 'pods "a" not found'


async def test_watch_streams_added_modified_deleted_after_resource_version(
    graceful_admin: CoreV1Api,
) -> None:
    admin = graceful_admin
    await admin.create_namespaced_pod(NS, pod("before"))
    start = (await admin.list_namespaced_pod(NS)).metadata.resource_version
    await admin.create_namespaced_pod(NS, pod("a"))
    await admin.delete_namespaced_pod("a", NS, grace_period_seconds=30)
    await admin.delete_namespaced_pod("a", NS, grace_period_seconds=0)
    seen = await collect(admin, start, count=3)
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_watch_without_resource_version_starts_with_the_current_objects(
    admin: CoreV1Api,
) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    await admin.create_namespaced_pod(NS, pod("b"))
    assert await collect(admin, "0", count=2) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_delivers_changes_made_while_it_is_open(admin: CoreV1Api) -> None:
    start = (await admin.list_namespaced_pod(NS)).metadata.resource_version
    watching = asyncio.create_task(collect(admin, start, count=1))
    await asyncio.sleep(0.3)
    await admin.create_namespaced_pod(NS, pod("late"))
    assert await watching == [("ADDED", "late")]


async def test_timeout_seconds_ends_a_quiet_watch(admin: CoreV1Api) -> None:
    start = (await admin.list_namespaced_pod(NS)).metadata.resource_version
    began = time.monotonic()
    assert await collect(admin, start, count=1, timeout=1) == []
    assert 0.9 < time.monotonic() - began < 3


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ["a", "b", "c"]),
        ("app=x", ["a"]),
        ("app==x", ["a"]),
        ("app!=x", ["b", "c"]),
        ("app in (x, y)", ["a", "b"]),
        ("app notin (x)", ["b", "c"]),
        ("app", ["a", "b"]),
        ("!app", ["c"]),
        ("app in (x,y),tier=web", ["b"]),
    ],
    ids=[
        "empty",
        "equals",
        "double-equals",
        "not-equals",
        "in",
        "notin",
        "exists",
        "not-exists",
        "and",
    ],
)
async def test_label_selector_filters_the_list(
    admin: CoreV1Api, selector: str, expected: list[str]
) -> None:
    await admin.create_namespaced_pod(NS, pod("a", {"app": "x"}))
    await admin.create_namespaced_pod(NS, pod("b", {"app": "y", "tier": "web"}))
    await admin.create_namespaced_pod(NS, pod("c"))
    listed = await admin.list_namespaced_pod(NS, label_selector=selector)
    assert [p.metadata.name for p in listed.items] == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("involvedObject.kind=Pod", ["e1"]),
        ("involvedObject.kind!=Pod", ["e2"]),
        ("metadata.name=e2", ["e2"]),
        ("metadata.namespace=jupyter-system,reason=Scheduled", ["e1", "e2"]),
    ],
    ids=["nested-equals", "nested-not-equals", "name", "namespace-and-reason"],
)
async def test_field_selector_filters_the_list(
    admin: CoreV1Api, selector: str, expected: list[str]
) -> None:
    await admin.create_namespaced_event(NS, event("e1", "Pod"))
    await admin.create_namespaced_event(NS, event("e2", "PersistentVolumeClaim"))
    listed = await admin.list_namespaced_event(NS, field_selector=selector)
    assert [e.metadata.name for e in listed.items] == expected


async def test_label_selector_filters_the_watch(admin: CoreV1Api) -> None:
    start = (await admin.list_namespaced_pod(NS)).metadata.resource_version
    await admin.create_namespaced_pod(NS, pod("a", {"component": "singleuser-server"}))
    await admin.create_namespaced_pod(NS, pod("b", {"component": "other"}))
    await admin.create_namespaced_pod(NS, pod("c", {"component": "singleuser-server"}))
    seen = await collect(admin, start, count=2, label_selector="component=singleuser-server")
    assert seen == [("ADDED", "a"), ("ADDED", "c")]


async def test_watch_reports_an_object_that_stops_matching_as_deleted(admin: CoreV1Api) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    start = created.metadata.resource_version
    created.status.phase = "Running"
    await admin.replace_namespaced_pod_status("a", NS, created)
    seen = await collect(admin, start, count=1, field_selector="status.phase=Pending")
    assert seen == [("DELETED", "a")]


async def test_resource_version_match_not_older_than_lists_the_current_state(
    admin: CoreV1Api,
) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    listed = await admin.list_namespaced_pod(
        NS, resource_version="0", resource_version_match="NotOlderThan"
    )
    assert [p.metadata.name for p in listed.items] == ["a"]


async def test_watch_from_a_compacted_resource_version_gives_410_expired(
    make_apiserver: MakeServer, make_client: MakeClient
) -> None:
    server = await make_apiserver(history_limit=2)
    admin = await make_client(server)
    first = await admin.create_namespaced_pod(NS, pod("a"))
    for name in ("b", "c", "d"):
        await admin.create_namespaced_pod(NS, pod(name))
    with pytest.raises(ApiException) as error:
        await collect(admin, first.metadata.resource_version, count=1)
    assert error.value.status == 410
    assert "Expired: too old resource version" in error.value.reason


async def test_creating_a_duplicate_gives_409_already_exists(admin: CoreV1Api) -> None:
    await admin.create_namespaced_pod(NS, pod("a"))
    with pytest.raises(ApiException) as error:
        await admin.create_namespaced_pod(NS, pod("a"))
    assert error.value.status == 409
    status = status_of(error.value)
    assert (status["kind"], status["status"]) == ("Status", "Failure")
    assert status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "a", "kind": "pods"}


async def test_an_unknown_field_gives_422_invalid_with_the_schema_message(admin: CoreV1Api) -> None:
    body = pod("a")
    body["spec"]["containers"][0]["bogus"] = 1
    with pytest.raises(ApiException) as error:
        await admin.create_namespaced_pod(NS, body)
    assert error.value.status == 422
    status = status_of(error.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Pod "a" is invalid: spec.containers[0]: '
        "Additional properties are not allowed ('bogus' was unexpected)"
    )


async def test_an_invalid_label_value_gives_422(admin: CoreV1Api) -> None:
    with pytest.raises(ApiException) as error:
        await admin.create_namespaced_pod(NS, pod("a", {"user": "qiang@guo"}))
    assert error.value.status == 422


async def test_creating_in_a_missing_namespace_gives_404(admin: CoreV1Api) -> None:
    with pytest.raises(ApiException) as error:
        await admin.create_namespaced_pod("nowhere", pod("a"))
    assert error.value.status == 404
    assert status_of(error.value)["message"] == 'namespaces "nowhere" not found'


async def test_status_put_changes_only_the_status(admin: CoreV1Api) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    created.status.phase = "Running"
    created.metadata.labels = {"sneaky": "yes"}
    updated = await admin.replace_namespaced_pod_status("a", NS, created)
    assert updated.status.phase == "Running"
    assert not updated.metadata.labels
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)


async def test_status_put_of_only_the_status_keeps_the_spec(admin: CoreV1Api) -> None:
    """What the sandbox kubelet sends, as a real kubelet's status patch: no spec."""
    created = await admin.create_namespaced_pod(NS, pod("a"))
    meta = created.metadata
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a", "namespace": NS, "resourceVersion": meta.resource_version},
        "status": {"phase": "Running"},
    }
    updated = await admin.replace_namespaced_pod_status("a", NS, body)
    assert updated.status.phase == "Running"
    assert updated.spec == created.spec


async def test_put_with_a_stale_resource_version_gives_409_conflict(admin: CoreV1Api) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    created.status.phase = "Running"
    await admin.replace_namespaced_pod_status("a", NS, created)
    created.status.phase = "Failed"
    with pytest.raises(ApiException) as error:
        await admin.replace_namespaced_pod_status("a", NS, created)
    assert error.value.status == 409
    assert status_of(error.value)["reason"] == "Conflict"


async def test_events_always_carry_last_timestamp_and_event_time(
    admin: CoreV1Api, apiserver: ApiServer
) -> None:
    await admin.create_namespaced_event(NS, event("e1", "Pod"))
    (stored,) = apiserver.objects("events")
    assert "lastTimestamp" in stored and "eventTime" in stored


async def test_graceful_pod_deletion_marks_the_pod_until_a_zero_grace_delete(
    graceful_server: ApiServer, graceful_admin: CoreV1Api
) -> None:
    server, admin = graceful_server, graceful_admin
    await admin.create_namespaced_pod(NS, pod("a"))
    await admin.delete_namespaced_pod(
        "a", NS, grace_period_seconds=30, body=V1DeleteOptions(grace_period_seconds=30)
    )
    marked = await admin.read_namespaced_pod("a", NS)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    await admin.delete_namespaced_pod("a", NS, grace_period_seconds=0)
    assert server.objects("pods") == []


async def test_hub_role_allows_pods_in_the_hub_namespace(hub: CoreV1Api) -> None:
    await hub.create_namespaced_pod(NS, pod("a"))
    assert [p.metadata.name for p in (await hub.list_namespaced_pod(NS)).items] == ["a"]


async def test_hub_role_forbids_pods_in_another_namespace(hub: CoreV1Api) -> None:
    with pytest.raises(ApiException) as error:
        await hub.list_namespaced_pod("default")
    assert error.value.status == 403
    assert status_of(error.value)["message"] == (
        'pods is forbidden: User "system:serviceaccount:jupyter-system:hub" cannot list '
        'resource "pods" in API group "" in the namespace "default"'
    )


async def test_hub_role_forbids_updating_pod_status(admin: CoreV1Api, hub: CoreV1Api) -> None:
    created = await admin.create_namespaced_pod(NS, pod("a"))
    with pytest.raises(ApiException) as error:
        await hub.replace_namespaced_pod_status("a", NS, created)
    assert error.value.status == 403


async def test_hub_cannot_create_a_persistent_volume_without_a_cluster_rule(
    hub: CoreV1Api,
) -> None:
    with pytest.raises(ApiException) as error:
        await hub.create_persistent_volume(pv("hpc-pv"))
    assert error.value.status == 403
    status = status_of(error.value)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'persistentvolumes is forbidden: User "system:serviceaccount:jupyter-system:hub" '
        'cannot create resource "persistentvolumes" in API group "" at the cluster scope'
    )


async def test_hub_creates_a_persistent_volume_with_the_cluster_rule(
    make_apiserver: MakeServer, make_client: MakeClient
) -> None:
    rule = {"resources": ["persistentvolumes"], "verbs": ["get", "create"]}
    server = await make_apiserver(hub_cluster_rules=[rule])
    hub = await make_client(server, token="hub-token")
    created = await hub.create_persistent_volume(pv("hpc-pv"))
    assert created.metadata.name == "hpc-pv"
    assert created.metadata.namespace is None


async def test_hub_may_do_anything_when_the_role_is_not_enforced(
    make_apiserver: MakeServer, make_client: MakeClient
) -> None:
    server = await make_apiserver(enforce_hub_role=False)
    hub = await make_client(server, token="hub-token")
    await hub.create_persistent_volume(pv("hpc-pv"))


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}], ids=["no-token", "unknown-token"]
)
async def test_a_request_without_a_known_token_gives_401(
    apiserver: ApiServer, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{apiserver.url}/api/v1/namespaces", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["reason"] == "Unauthorized"


async def test_discovery_reports_the_kubernetes_version(apiserver: ApiServer) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer nobody-token"}) as session:
        async with session.get(f"{apiserver.url}/version") as response:
            assert (await response.json())["gitVersion"] == "v1.37.0"


async def test_binding_outside_loopback_is_refused() -> None:
    with pytest.raises(ValueError):
        await ApiServer(tokens={}).start(host="0.0.0.0")


async def test_kubeconfig_is_readable_only_by_its_owner(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    apiserver.write_kubeconfig(path, "hub-token", NS)
    assert path.stat().st_mode & 0o077 == 0


@pytest.fixture
def kubespawner_config(
    apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """KubeSpawner's process-wide client config, pointed at this test's server as the hub."""
    path = tmp_path / "hub-kubeconfig"
    apiserver.write_kubeconfig(path, "hub-token", NS)
    # kubernetes_asyncio reads KUBECONFIG once, when it is imported.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    original = Configuration.get_default_copy()
    clients.load_config.cache_clear()
    clients.load_config()
    yield
    clients.load_config.cache_clear()
    Configuration.set_default(original)


async def test_kubespawner_reflectors_see_a_pod_created_then_deleted(
    kubespawner_config: None, admin: CoreV1Api
) -> None:
    pods = PodReflector(namespace=NS, labels={"component": "singleuser-server"})
    events = EventReflector(namespace=NS, fields={"involvedObject.kind": "Pod"})
    try:
        await pods.start()
        await events.start()
        await admin.create_namespaced_pod(NS, pod("jupyter-a", {"component": "singleuser-server"}))
        await admin.create_namespaced_pod(NS, pod("other", {"component": "other"}))
        await admin.create_namespaced_event(NS, event("jupyter-a.1", "Pod"))
        await wait_for(lambda: f"{NS}/jupyter-a" in pods.pods)
        await wait_for(lambda: len(events.events) == 1)
        assert list(pods.pods) == [f"{NS}/jupyter-a"]
        await admin.delete_namespaced_pod("jupyter-a", NS, grace_period_seconds=0)
        await wait_for(lambda: not pods.pods)
    finally:
        await pods.stop()
        await events.stop()


async def test_a_kubespawner_pod_manifest_passes_strict_validation(hub: CoreV1Api) -> None:
    manifest = make_pod(
        name="jupyter-qiang-guo03---fa0fd3ed",
        cmd=["start-singleuser.py"],
        port=8888,
        image="quay.io/jupyter/base-notebook:latest",
        labels={"component": "singleuser-server", "hub.jupyter.org/username": "qiang-guo03"},
        env={"JUPYTERHUB_API_TOKEN": "secret"},
        uid=0,
        working_dir="/",
        cpu_limit=1.0,
        mem_limit="1G",
        volumes=[{"name": "nfsuid-share", "nfs": {"server": "nfs.example", "path": "/hpc"}}],
        volume_mounts=[{"name": "nfsuid-share", "mountPath": "/data/hpc", "subPath": "home/x"}],
    )
    created = await hub.create_namespaced_pod(NS, manifest)
    assert created.spec.containers[0].volume_mounts[-1].sub_path == "home/x"


async def test_a_pod_being_deleted_still_takes_status_updates(graceful_admin: CoreV1Api) -> None:
    admin = graceful_admin
    await admin.create_namespaced_pod(NS, pod("a"))
    marked = await admin.delete_namespaced_pod("a", NS, grace_period_seconds=30)
    marked.status.phase = "Succeeded"
    updated = await admin.replace_namespaced_pod_status("a", NS, marked)
    assert updated.status.phase == "Succeeded"
    assert updated.metadata.deletion_timestamp is not None


async def test_deleting_a_namespace_deletes_its_objects(
    admin: CoreV1Api, apiserver: ApiServer
) -> None:
    await admin.create_namespace({"metadata": {"name": "scratch"}})
    await admin.create_namespaced_pod("scratch", pod("a"))
    await admin.delete_namespace("scratch")
    assert apiserver.objects("pods") == []
    assert "scratch" not in [n["metadata"]["name"] for n in apiserver.objects("namespaces")]


async def test_an_unparsable_label_selector_gives_400(admin: CoreV1Api) -> None:
    with pytest.raises(ApiException) as error:
        await admin.list_namespaced_pod(NS, label_selector="app=(x")
    assert error.value.status == 400


async def test_dry_run_create_validates_but_stores_nothing(
    apiserver: ApiServer, admin: CoreV1Api
) -> None:
    created = await admin.create_namespaced_pod(NS, pod("dry"), dry_run="All")

    assert created.metadata.name == "dry"
    assert apiserver.objects("pods") == []
    with pytest.raises(ApiException) as error:
        bad = pod("bad")
        bad["spec"]["containers"][0]["bogus"] = 1
        await admin.create_namespaced_pod(NS, bad, dry_run="All")
    assert error.value.status == 422

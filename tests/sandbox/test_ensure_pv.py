"""The ensure-pv storage way against the sandbox API server, with the hub's real permissions."""

from __future__ import annotations

import pytest

from nfsuidspawner import NFSUIDError, manifests
from nfsuidspawner.storage import ensure_share

from .conftest import HUB_NAMESPACE

PV = manifests.persistent_volume(
    "hpc-pv",
    "aixsky.msxf.local",
    "/hpc",
    ["vers=3", "hard"],
    "1Ti",
    HUB_NAMESPACE,
    "hpc-shared-pvc",
)
PVC = manifests.persistent_volume_claim("hpc-shared-pvc", HUB_NAMESPACE, "hpc-pv", "1Ti")
PV_RULES = [{"resources": ["persistentvolumes"], "verbs": ["get", "create"]}]


async def test_hub_role_alone_gets_an_error_naming_the_cluster_role_rule(
    make_apiserver, make_client
) -> None:
    server = await make_apiserver()
    hub = await make_client(server, token="hub-token")

    with pytest.raises(NFSUIDError) as refused:
        await ensure_share(hub, PV, PVC)

    assert str(refused.value).startswith(
        "nfsuid: the hub may not create PersistentVolume hpc-pv (403 Forbidden). Fix:"
    )
    assert 'resources: ["persistentvolumes"], verbs: ["get", "create"]' in str(refused.value)
    assert server.objects("persistentvolumeclaims") == []


async def test_with_the_cluster_role_the_pair_is_created_and_bound(
    make_apiserver, make_client
) -> None:
    server = await make_apiserver(hub_cluster_rules=PV_RULES)
    hub = await make_client(server, token="hub-token")

    await ensure_share(hub, PV, PVC)

    [pv] = server.objects("persistentvolumes")
    [pvc] = server.objects("persistentvolumeclaims")
    assert pv["spec"]["claimRef"] == {"namespace": HUB_NAMESPACE, "name": "hpc-shared-pvc"}
    assert pvc["spec"]["volumeName"] == "hpc-pv"


async def test_ensuring_twice_is_idempotent_and_changes_nothing(make_apiserver, make_client):
    server = await make_apiserver(hub_cluster_rules=PV_RULES)
    hub = await make_client(server, token="hub-token")
    await ensure_share(hub, PV, PVC)
    before = server.objects("persistentvolumes") + server.objects("persistentvolumeclaims")

    await ensure_share(hub, PV, PVC)

    after = server.objects("persistentvolumes") + server.objects("persistentvolumeclaims")
    assert after == before


LEFTOVER_PV = manifests.persistent_volume(
    "hpc-pv", "old-filer.local", "/scratch", [], "1Ti", HUB_NAMESPACE, "hpc-shared-pvc"
)
FOREIGN_CLAIM_PV = manifests.persistent_volume(
    "hpc-pv", "aixsky.msxf.local", "/hpc", [], "1Ti", "other-team", "their-claim"
)


@pytest.mark.parametrize(
    ("existing", "differ"),
    [
        (LEFTOVER_PV, "nfs.server 'old-filer.local' (wanted 'aixsky.msxf.local')"),
        (FOREIGN_CLAIM_PV, "claimRef 'other-team/their-claim' (wanted 'jupyter-system/hpc"),
    ],
    ids=["other-export", "other-claim"],
)
async def test_an_existing_pv_that_differs_is_refused_naming_both(
    make_apiserver, make_client, existing, differ
) -> None:
    """A 409 used to count as success, so a leftover PV for another export was mounted."""
    server = await make_apiserver(hub_cluster_rules=PV_RULES)
    await (await make_client(server)).create_persistent_volume(body=existing)
    hub = await make_client(server, token="hub-token")

    with pytest.raises(NFSUIDError) as refused:
        await ensure_share(hub, PV, PVC)

    assert str(refused.value).startswith(
        "nfsuid: the existing PersistentVolume hpc-pv is not the one nfs_storage 'ensure-pv'"
    )
    assert differ in str(refused.value)
    assert server.objects("persistentvolumeclaims") == []


async def test_an_existing_claim_bound_to_another_volume_is_refused(
    make_apiserver, make_client
) -> None:
    server = await make_apiserver(hub_cluster_rules=PV_RULES)
    other = manifests.persistent_volume_claim("hpc-shared-pvc", HUB_NAMESPACE, "scratch-pv", "1Ti")
    await (await make_client(server)).create_namespaced_persistent_volume_claim(
        HUB_NAMESPACE, other
    )
    hub = await make_client(server, token="hub-token")

    with pytest.raises(NFSUIDError, match="volumeName 'scratch-pv' \\(wanted 'hpc-pv'\\)"):
        await ensure_share(hub, PV, PVC)


@pytest.fixture
def spawner_on(make_spawner, tmp_path, monkeypatch):
    """An NFSUIDSpawner whose KubeSpawner client talks to `server` with the hub's token."""
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    default = Configuration.get_default_copy()

    def make(server, config):
        path = tmp_path / "hub-kubeconfig"
        server.write_kubeconfig(path, "hub-token", HUB_NAMESPACE)
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        clients.load_config.cache_clear()
        return make_spawner(config | {"namespace": HUB_NAMESPACE, "start_timeout": 3})

    yield make
    clients.load_config.cache_clear()
    Configuration.set_default(default)


ENSURE_PV = {
    "nfs_storage": "ensure-pv",
    "nfs_server": "aixsky.msxf.local",
    "nfs_export_path": "/hpc",
}


async def test_spawn_ensures_the_pair_before_creating_the_pod(make_apiserver, spawner_on):
    server = await make_apiserver(hub_cluster_rules=PV_RULES)
    spawner = spawner_on(server, ENSURE_PV)

    with pytest.raises(TimeoutError):  # no kubelet here: the pod never runs
        await spawner.start()

    [pv] = server.objects("persistentvolumes")
    [pod] = server.objects("pods")
    assert pv["spec"]["nfs"] == {"server": "aixsky.msxf.local", "path": "/hpc"}
    assert {"name": "nfsuid-share", "persistentVolumeClaim": {"claimName": "hpc-shared-pvc"}} in (
        pod["spec"]["volumes"]
    )


async def test_spawn_without_the_cluster_role_is_refused_before_any_pod(make_apiserver, spawner_on):
    server = await make_apiserver()
    spawner = spawner_on(server, ENSURE_PV)

    with pytest.raises(NFSUIDError, match="may not create PersistentVolume hpc-pv"):
        await spawner.start()

    assert server.objects("pods") == []

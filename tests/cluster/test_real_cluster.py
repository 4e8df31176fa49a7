"""Opt-in: a real API server accepts the pods, PV and PVC that nfsuidspawner builds.

    ./run test tests/cluster --real-cluster

Everything is sent with dryRun=All: the API server validates, defaults and runs
admission (Pod Security included) but stores nothing. Set NFSUID_TEST_NAMESPACE to a
namespace labelled pod-security.kubernetes.io/enforce=restricted to check that the
hub source's pods are admitted there, and NFSUID_TEST_BASELINE_NAMESPACE to one
enforcing baseline for the initcontainer source. Without --real-cluster these skip.
"""

from __future__ import annotations

import os

import pytest
from kubernetes_asyncio import client, config

from nfsuidspawner import Identity, manifests

from ..conftest import serialize


@pytest.fixture
async def api(request: pytest.FixtureRequest):
    if not request.config.getoption("--real-cluster"):
        pytest.skip("needs --real-cluster and a KUBECONFIG for a real cluster")
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("needs KUBECONFIG pointing at a real cluster")
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=os.environ["KUBECONFIG"], client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


def namespace(variable: str) -> str:
    return os.environ.get(variable) or os.environ.get("NFSUID_TEST_NAMESPACE", "default")


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ({"identity_source": lambda spawner: Identity(2001, 3001)}, "NFSUID_TEST_NAMESPACE"),
        ({"identity_source": "initcontainer"}, "NFSUID_TEST_BASELINE_NAMESPACE"),
    ],
    ids=["known-identity-restricted", "initcontainer-baseline"],
)
async def test_pod_is_admitted(api, make_spawner, source, variable) -> None:
    ns = namespace(variable)
    spawner = make_spawner(
        source
        | {
            "namespace": ns,
            "nfs_storage": "inline",
            "nfs_server": "nfs.example.org",
            "nfs_export_path": "/hpc",
        }
    )
    pod = serialize(await spawner.get_pod_manifest())

    created = await api.create_namespaced_pod(ns, pod, dry_run="All")

    assert created.spec.init_containers[0].name == manifests.INIT_CONTAINER


async def test_ensured_pv_and_pvc_are_accepted(api) -> None:
    ns = namespace("NFSUID_TEST_NAMESPACE")
    pv = manifests.persistent_volume(
        "nfsuid-dry-run-pv", "nfs.example.org", "/hpc", ["vers=3"], "1Ti", ns, "nfsuid-dry-run-pvc"
    )
    pvc = manifests.persistent_volume_claim("nfsuid-dry-run-pvc", ns, "nfsuid-dry-run-pv", "1Ti")

    await api.create_persistent_volume(pv, dry_run="All")
    await api.create_namespaced_persistent_volume_claim(ns, pvc, dry_run="All")

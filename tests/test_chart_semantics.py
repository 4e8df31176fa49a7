"""What the Zero-to-JupyterHub 4.4.0 hub makes of our values files, down to the lab's pod.

The chart's jupyterhub_config.py turns `singleuser.*` into `c.KubeSpawner.*` (and
`c.Spawner.cmd`), then applies `hub.config`. `chart_config` below models the part of
that mapping these values files touch, written from the chart's documented behaviour:
volumes and volume_mounts become dicts keyed "home", "files" and "<i>-<name>", and with
`cloudMetadata.blockWithIptables` the chart appends a kubernetes_asyncio V1Container
(not a dict) to init_containers. An NFSUIDSpawner built from that Config must still run
the lab as the directory's owner, keep the chart's initContainers beside its own, and
produce a valid pod.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import V1Capabilities, V1Container, V1SecurityContext
from traitlets.config import Config

from nfsuidspawner import NFSUIDSpawner, pss

from .conftest import SHARE_OWNERS, serialize
from .test_helm_values import HELM_VALUES, VALUES_FILES, chart_values, helm_merge

NAMESPACE = "jupyter-system"
OWNER_UID, OWNER_GID = SHARE_OWNERS["alice"]
CHART_UID = 1000

# singleuser keys the chart copies to the KubeSpawner trait of the same meaning.
SINGLEUSER_TRAITS = {
    "uid": "uid",
    "fs_gid": "fsGid",
    "init_containers": "initContainers",
    "extra_containers": "extraContainers",
    "extra_labels": "extraLabels",
    "extra_annotations": "extraAnnotations",
    "node_selector": "nodeSelector",
    "lifecycle_hooks": "lifecycleHooks",
    "cpu_limit": "cpu.limit",
    "cpu_guarantee": "cpu.guarantee",
    "mem_limit": "memory.limit",
    "mem_guarantee": "memory.guarantee",
    "environment": "extraEnv",
    "profile_list": "profileList",
    "extra_pod_config": "extraPodConfig",
}


def lookup(values: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(key)
    return values


def chart_storage(singleuser: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chart's volumes and volume_mounts dicts for singleuser.storage and extraFiles."""
    storage = singleuser["storage"]
    volumes: dict[str, Any] = {}
    mounts: dict[str, Any] = {}
    if storage["type"] == "static":
        volumes["home"] = {
            "name": "home",
            "persistentVolumeClaim": {"claimName": storage["static"]["pvcName"]},
        }
        mounts["home"] = {
            "name": "home",
            "mountPath": storage["homeMountPath"],
            "subPath": storage["static"]["subPath"],
        }
    elif storage["type"] == "dynamic":
        name = storage["dynamic"]["volumeNameTemplate"]
        volumes["home"] = {"name": name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        mounts["home"] = {"name": name, "mountPath": storage["homeMountPath"]}
    files = singleuser.get("extraFiles") or {}
    if files:
        volumes["files"] = {
            "name": "files",
            "secret": {
                "secretName": "singleuser",
                "items": [{"key": key, "path": key} for key in files],
            },
        }
        for key, details in files.items():
            # One mount per file; these keys only order the mounts.
            mounts[f"files-{key}"] = {
                "name": "files",
                "mountPath": details["mountPath"],
                "subPath": key,
            }
    for i, volume in enumerate(storage.get("extraVolumes") or []):
        volumes[f"{i}-{volume['name']}"] = volume
    for i, mount in enumerate(storage.get("extraVolumeMounts") or []):
        mounts[f"{i}-{mount['name']}"] = mount
    return volumes, mounts


def cloud_metadata_blocker(singleuser: dict[str, Any]) -> V1Container:
    tools = singleuser["networkTools"]["image"]
    return V1Container(
        name="block-cloud-metadata",
        image=f"{tools['name']}:{tools['tag']}",
        command=[
            "iptables",
            "--append",
            "OUTPUT",
            "--destination",
            singleuser["cloudMetadata"]["ip"],
            "--jump",
            "DROP",
        ],
        security_context=V1SecurityContext(
            privileged=True, run_as_user=0, capabilities=V1Capabilities(add=["NET_ADMIN"])
        ),
    )


def chart_config(values: dict[str, Any]) -> Config:
    """The traitlets Config the chart's hub builds from (merged) values."""
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.KubeSpawner.namespace = NAMESPACE
    singleuser = copy.deepcopy(values["singleuser"])
    for trait, key in SINGLEUSER_TRAITS.items():
        value = lookup(singleuser, key)
        if value is not None:
            c.KubeSpawner[trait] = value
    image = singleuser["image"]
    c.KubeSpawner.image = f"{image['name']}:{image['tag']}" if image.get("tag") else image["name"]
    if singleuser.get("cmd") is not None:
        c.Spawner.cmd = singleuser["cmd"]
    if singleuser.get("defaultUrl") is not None:
        c.Spawner.default_url = singleuser["defaultUrl"]
    c.KubeSpawner.volumes, c.KubeSpawner.volume_mounts = chart_storage(singleuser)
    if singleuser["cloudMetadata"]["blockWithIptables"]:
        c.KubeSpawner.init_containers.append(cloud_metadata_blocker(singleuser))
    for section, settings in copy.deepcopy(values["hub"].get("config") or {}).items():
        c[section].update(settings)
    return c


def test_chart_config_appends_iptables_container_object_to_init_containers() -> None:
    values = helm_merge(
        chart_values(HELM_VALUES / "config.yaml"),
        {"singleuser": {"cloudMetadata": {"blockWithIptables": True}}},
    )
    (blocker,) = chart_config(values).KubeSpawner.init_containers
    assert isinstance(blocker, V1Container) and blocker.security_context.privileged


def test_chart_config_hub_config_overrides_spawner_class() -> None:
    c = chart_config(chart_values(HELM_VALUES / "config.yaml"))
    assert c.JupyterHub.spawner_class == "nfsuid"


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_hub_config_keys_are_nfsuidspawner_traits(values_file: Path) -> None:
    settings = chart_values(values_file)["hub"]["config"]["NFSUIDSpawner"]
    traits = set(NFSUIDSpawner.class_trait_names(config=True))
    assert set(settings) - traits == set()


def test_spawner_class_entry_point_names_nfsuidspawner() -> None:
    found = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "nfsuid"]
    if not found:
        pytest.skip(
            "nfsuidspawner is not installed, so its entry point is not registered"
            " (pip install -e .)"
        )
    assert [e.load() for e in found] == [NFSUIDSpawner]


# --- the pod an NFSUIDSpawner builds from each values file --------------------------------


def variants() -> list[Any]:
    """Each values file as written, with the chart's uid/fsGid back, and with iptables on."""
    params = []
    for path in VALUES_FILES:
        params += [
            pytest.param((path, {}), id=path.name),
            pytest.param(
                (path, {"singleuser": {"uid": CHART_UID, "fsGid": 100}}),
                id=f"{path.name}-chart-uid-1000",
            ),
            pytest.param(
                (path, {"singleuser": {"cloudMetadata": {"blockWithIptables": True}}}),
                id=f"{path.name}-iptables",
            ),
        ]
    return params


# Pods are plain data once built; each variant is built once per session.
_built_pods: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


@pytest.fixture(params=variants())
def chart_pod(
    request: pytest.FixtureRequest, make_spawner: Callable[..., NFSUIDSpawner]
) -> Callable[[], Any]:
    """Build alice's pod from a values file, through the chart's Config, as the hub would."""
    values_file, override = request.param
    key = f"{values_file.name}:{override}"
    values = helm_merge(chart_values(values_file), override)
    config = chart_config(values)
    # The hub's mount of the share is at hub_share_path; here it is a local directory.
    if config.NFSUIDSpawner.get("identity_source") == "hub":
        config.NFSUIDSpawner.hub_share_path = str(request.getfixturevalue("hub_share"))

    async def build() -> tuple[dict[str, Any], dict[str, Any]]:
        if key not in _built_pods:
            spawner = make_spawner(config, username="alice")
            _built_pods[key] = (values, serialize(await spawner.get_pod_manifest()))
        return copy.deepcopy(_built_pods[key])

    return build


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod["spec"].get("initContainers", []) + pod["spec"]["containers"]


def run_as(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    own = container.get("securityContext") or {}
    return own.get(key, (pod["spec"].get("securityContext") or {}).get(key))


async def test_pod_keeps_chart_init_containers_beside_nfsuid_identity(chart_pod) -> None:
    values, pod = await chart_pod()
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    expected = ["nfsuid-identity"] + [c["name"] for c in values["singleuser"]["initContainers"]]
    if values["singleuser"]["cloudMetadata"]["blockWithIptables"]:
        expected.append("block-cloud-metadata")
    assert names == expected


async def test_pod_never_runs_lab_as_chart_uid(chart_pod) -> None:
    values, pod = await chart_pod()
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    source = values["hub"]["config"]["NFSUIDSpawner"].get("identity_source", "initcontainer")
    if source == "hub":
        assert (run_as(pod, notebook, "runAsUser"), run_as(pod, notebook, "runAsGroup")) == (
            OWNER_UID,
            OWNER_GID,
        )
    else:
        assert run_as(pod, notebook, "runAsUser") == 0
    assert CHART_UID not in {run_as(pod, c, "runAsUser") for c in containers(pod)}
    assert "fsGroup" not in (pod["spec"].get("securityContext") or {})


async def test_pod_volume_names_are_unique_and_mounted_volumes_exist(chart_pod) -> None:
    _, pod = await chart_pod()
    names = [v["name"] for v in pod["spec"]["volumes"]]
    assert len(names) == len(set(names)), names
    for container in containers(pod):
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in names, (container["name"], mount)


async def test_pod_mounts_the_share_only_by_subpath(chart_pod) -> None:
    """Except the identity check, which walks the path from the root, read-only."""
    _, pod = await chart_pod()
    for container in containers(pod):
        for mount in container.get("volumeMounts", []):
            if mount["name"] == "nfsuid-share" and container["name"] != "nfsuid-identity":
                assert mount.get("subPath"), (container["name"], mount)


async def test_pod_carries_chart_resources_and_image(chart_pod) -> None:
    values, pod = await chart_pod()
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    assert notebook["image"] == "{name}:{tag}".format(**values["singleuser"]["image"])
    assert notebook["args"][0] == "start-singleuser.py" and "command" not in notebook
    assert notebook["resources"] == {
        "requests": {"cpu": 1.0, "memory": 2 * 1024**3},
        "limits": {"cpu": 2.0, "memory": 4 * 1024**3},
    }


@pytest.mark.parametrize("version", ["1.29", "1.37"])
async def test_pod_validates_strictly_for_kubernetes(chart_pod, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="needs kubernetes-validate (the 'test' extra)"
    )
    _, pod = await chart_pod()
    kubernetes_validate.validate(pod, version, strict=True)


# --- Pod Security Standards, for the profile each identity source promises ----------------


async def test_pod_meets_pod_security_profile_of_its_identity_source(chart_pod) -> None:
    values, pod = await chart_pod()
    source = values["hub"]["config"]["NFSUIDSpawner"].get("identity_source", "initcontainer")
    violations = pss.restricted(pod) if source == "hub" else pss.baseline(pod)
    if values["singleuser"]["cloudMetadata"]["blockWithIptables"]:
        # Why the values files turn it off: its initContainer breaks either profile.
        assert "container block-cloud-metadata is privileged" in violations
    else:
        assert violations == []

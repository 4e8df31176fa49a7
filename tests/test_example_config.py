"""The top-level jupyterhub_config.py loads with JupyterHub's own loader and means what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub

from nfsuidspawner import NFSUIDSpawner

from .conftest import DOCKER_STACKS, serialize

EXAMPLE = Path(__file__).parent.parent / "jupyterhub_config.py"


@pytest.fixture
def hub_config():
    app = JupyterHub()
    app.load_config_file(str(EXAMPLE))
    return app.config


def test_example_selects_the_spawner_by_entry_point(hub_config) -> None:
    from jupyterhub.spawner import Spawner

    app = JupyterHub(config=hub_config)
    assert hub_config.JupyterHub.spawner_class == "nfsuid"
    assert app.spawner_class is NFSUIDSpawner
    assert issubclass(app.spawner_class, Spawner)


async def test_example_spawner_has_the_intended_settings(hub_config, make_spawner) -> None:
    spawner = make_spawner(hub_config)

    assert spawner.nfs_storage == "existing-pvc"
    assert spawner.nfs_pvc_name == "hpc-shared-pvc"
    assert spawner.identity_source == "initcontainer"
    assert spawner.cmd == ["start-singleuser.py"]
    assert (spawner.cpu_guarantee, spawner.cpu_limit) == (1, 2)
    assert (spawner.mem_guarantee, spawner.mem_limit) == (2 * 1024**3, 4 * 1024**3)


async def test_example_offers_the_docker_stacks_images(hub_config, make_spawner) -> None:
    profiles = make_spawner(hub_config).profile_list

    assert tuple(p["slug"] for p in profiles) == DOCKER_STACKS
    assert all(p["kubespawner_override"]["image"].startswith("quay.io/jupyter/") for p in profiles)
    assert [p["slug"] for p in profiles if p.get("default")] == ["base"]


async def test_example_profile_pod_mounts_the_share_pvc(hub_config, make_spawner) -> None:
    spawner = make_spawner(hub_config, username="qiang.guo03")
    spawner.user_options = {"profile": "scipy"}
    await spawner.load_user_options()

    pod = serialize(await spawner.get_pod_manifest())

    lab = pod["spec"]["containers"][0]
    assert lab["image"].startswith("quay.io/jupyter/scipy-notebook:")
    assert lab["args"][0] == "start-singleuser.py"
    assert {"name": "nfsuid-share", "persistentVolumeClaim": {"claimName": "hpc-shared-pvc"}} in (
        pod["spec"]["volumes"]
    )
    assert "readinessProbe" not in lab and "livenessProbe" not in lab

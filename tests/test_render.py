"""`nfsuidspawner render`: the objects the hub would create, exactly as a spawn builds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from nfsuidspawner import Identity
from nfsuidspawner.cli import main
from nfsuidspawner.inject import as_dict
from nfsuidspawner.offline import load_config, no_cluster
from nfsuidspawner.render import check, explain, objects_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "jupyterhub_config.py"


@pytest.fixture
def offline():
    with no_cluster():
        yield


@pytest.mark.parametrize(("profile", "server"), [(None, ""), ("scipy", "gpu"), ("base", "")])
async def test_the_pod_is_the_one_the_spawner_builds(offline, make_spawner, profile, server):
    config = load_config(str(EXAMPLE))
    [pod] = await objects_for(config, "alice", server, profile)

    spawner = make_spawner(config, username="alice", server_name=server)
    spawner.user_options = {"profile": profile} if profile else {}
    await spawner.load_user_options()
    assert pod == as_dict(await spawner.get_pod_manifest())
    assert pod["metadata"]["name"] == "jupyter-alice" + (f"--{server}" if server else "")
    expected = f"quay.io/jupyter/{profile or 'base'}-notebook:2025-12-31"
    assert pod["spec"]["containers"][0]["image"] == expected


async def test_ensure_pv_renders_the_pv_and_claim_first(offline) -> None:
    config = Config(
        {
            "NFSUIDSpawner": {
                "nfs_storage": "ensure-pv",
                "nfs_server": "aixsky.msxf.local",
                "nfs_export_path": "/hpc",
            }
        }
    )

    objects = await objects_for(config, "alice")

    assert [o["kind"] for o in objects] == ["PersistentVolume", "PersistentVolumeClaim", "Pod"]
    assert check(objects, "1.37").problems == []


async def test_a_known_identity_renders_the_hub_sources_pod_without_the_share(offline) -> None:
    config = Config({"NFSUIDSpawner": {"identity_source": "hub", "hub_share_path": "/nowhere"}})

    [pod] = await objects_for(config, "alice", identity=Identity(2001, 3001))

    assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] == 2001
    assert check([pod], "1.37").level == "restricted"


async def test_the_initcontainer_pod_is_baseline_and_says_why(offline) -> None:
    rendered = check(await objects_for(Config(), "alice"), "1.29")

    assert rendered.problems == []
    assert rendered.level == "baseline"
    assert "container notebook runAsUser is 0" in rendered.why


async def test_a_privileged_sidecar_makes_the_pod_privileged(offline) -> None:
    sidecar = {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}
    config = Config({"NFSUIDSpawner": {"extra_containers": [sidecar]}})

    rendered = check(await objects_for(config, "alice"), "1.37")

    assert rendered.level == "privileged"
    assert "container debug is privileged" in rendered.why


async def test_a_schema_problem_is_reported_not_hidden(offline) -> None:
    config = Config({"NFSUIDSpawner": {"pod_security_context": {"fsGroupChangePolicyy": "x"}}})

    rendered = check(await objects_for(config, "alice"), "1.37")

    assert rendered.problems and rendered.problems[0].startswith("Pod jupyter-alice:")
    assert "INVALID" in explain(rendered, "1.37", None)


def test_the_command_prints_the_objects_and_what_they_meet(capsys) -> None:
    status = main(["render", "alice", "--config", str(EXAMPLE), "--profile", "scipy"])

    out = capsys.readouterr().out
    [pod] = [doc for doc in yaml.safe_load_all(out) if doc]
    assert status == 0
    assert pod["kind"] == "Pod"
    assert pod["spec"]["containers"][0]["image"] == "quay.io/jupyter/scipy-notebook:2025-12-31"
    assert "# strict schema of Kubernetes 1.37: valid" in out
    assert "# Pod Security: baseline (not restricted:)" in out


def test_the_command_for_a_source_it_cannot_ask_names_the_fix(tmp_path, capsys) -> None:
    config = tmp_path / "site_config.py"
    config.write_text(
        "c = get_config()\n"
        "c.NFSUIDSpawner.identity_source = 'hub'\n"
        "c.NFSUIDSpawner.hub_share_path = '/nowhere'\n"
    )

    assert main(["render", "alice", "--config", str(config)]) == 1
    assert "cannot stat /nowhere/home/alice on the hub" in capsys.readouterr().err

"""The pods NFSUIDSpawner builds: schema-valid, mounting only the user's directory, hardened.

Every identity source and storage way, for awkward usernames. No cluster: the
pods are built from config and checked as data.
"""

from __future__ import annotations

import itertools

import kubernetes_validate
import pytest

from nfsuidspawner import Identity, NFSUIDError, manifests, pss
from nfsuidspawner.manifests import SHARE_VOLUME

from .conftest import SOURCES, STORAGE, env_of, notebook, serialize, source_config

KUBERNETES_VERSIONS = ["1.29", "1.37"]
USERNAMES = ["qiang.guo03", "Alice.Smith", "o'neil"]
MATRIX = list(itertools.product(SOURCES, STORAGE, USERNAMES))


@pytest.mark.parametrize(("source", "storage", "username"), MATRIX)
async def test_pod_validates_strictly(build_pod, source, storage, username) -> None:
    pod = await build_pod(source, storage, username)

    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_ensured_pv_and_pvc_validate_strictly(version: str) -> None:
    pv = manifests.persistent_volume(
        "hpc-pv",
        "aixsky.msxf.local",
        "/hpc",
        ["vers=3", "hard"],
        "1Ti",
        "jupyter-system",
        "hpc-shared-pvc",
    )
    pvc = manifests.persistent_volume_claim("hpc-shared-pvc", "jupyter-system", "hpc-pv", "1Ti")

    kubernetes_validate.validate(pv, version, strict=True)
    kubernetes_validate.validate(pvc, version, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The schema check above can fail: a misspelt field is an error, not ignored."""
    pvc = manifests.persistent_volume_claim("c", "ns", "pv", "1Ti")
    pvc["spec"]["volumeNmae"] = "pv"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, "1.37", strict=True)


@pytest.mark.parametrize(("source", "storage"), list(itertools.product(SOURCES, STORAGE)))
@pytest.mark.parametrize("home_symlink", [True, False], ids=["symlink", "direct"])
async def test_lab_never_mounts_the_share_root(build_pod, source, storage, home_symlink) -> None:
    pod = await build_pod(
        source,
        storage,
        home_symlink=home_symlink,
        extra_share_mounts=[{"subPath": "datasets", "mountPath": "/data/hpc/datasets"}],
    )

    share_mounts = [m for m in notebook(pod)["volumeMounts"] if m["name"] == SHARE_VOLUME]
    assert [m["subPath"] for m in share_mounts] == ["home/alice", "datasets"]


@pytest.mark.parametrize("sub_path", ["", ".", "/", "../etc", "home/../.."])
async def test_extra_mount_of_the_share_root_is_refused(make_spawner, sub_path) -> None:
    with pytest.raises(Exception, match="share root is never mounted"):
        make_spawner({"extra_share_mounts": [{"subPath": sub_path, "mountPath": "/x"}]})


async def test_extra_share_mounts_are_read_only(build_pod) -> None:
    pod = await build_pod(
        "initcontainer",
        extra_share_mounts=[{"subPath": "datasets", "mountPath": "/data/hpc/datasets"}],
    )

    extra = [m for m in notebook(pod)["volumeMounts"] if m["mountPath"] == "/data/hpc/datasets"]
    assert extra == [
        {
            "name": SHARE_VOLUME,
            "subPath": "datasets",
            "mountPath": "/data/hpc/datasets",
            "readOnly": True,
        }
    ]


async def test_user_directory_keeps_the_share_path(build_pod) -> None:
    pod = await build_pod("initcontainer", username="qiang.guo03")

    mounts = {m["mountPath"]: m for m in notebook(pod)["volumeMounts"]}
    assert mounts["/data/hpc/home/qiang.guo03"]["subPath"] == "home/qiang.guo03"
    init_env = env_of(pod["spec"]["initContainers"][0])
    assert init_env["NFSUID_HOME_LINK"] == "/nfsuid/home/qiang.guo03"
    assert init_env["NFSUID_PATH"] == "/data/hpc/home/qiang.guo03"


async def test_without_symlink_the_directory_is_mounted_at_home(build_pod) -> None:
    pod = await build_pod("initcontainer", home_symlink=False)

    mounts = {m["mountPath"]: m for m in notebook(pod)["volumeMounts"]}
    assert mounts["/home/alice"]["subPath"] == "home/alice"
    assert "/data/hpc/home/alice" not in mounts
    assert "NFSUID_HOME_LINK" not in env_of(pod["spec"]["initContainers"][0])


@pytest.mark.parametrize("source", ["hub", "callable"])
async def test_known_identity_runs_the_lab_as_the_owner(build_pod, source) -> None:
    pod = await build_pod(source, username="qiang.guo03")

    lab = notebook(pod)
    assert lab["securityContext"]["runAsUser"] == 2003
    assert lab["securityContext"]["runAsGroup"] == 3003
    assert {k: v for k, v in env_of(lab).items() if k.startswith("NB_") or k == "HOME"} == {
        "NB_USER": "qiang.guo03",
        "NB_UID": "2003",
        "NB_GID": "3003",
        "NB_GROUP": "qiang.guo03",
        "HOME": "/home/qiang.guo03",
    }
    assert env_of(pod["spec"]["initContainers"][0])["NFSUID_EXPECT_UID"] == "2003"


async def test_initcontainer_source_starts_as_root_that_can_only_switch(build_pod) -> None:
    pod = await build_pod("initcontainer")

    lab = notebook(pod)["securityContext"]
    assert lab["runAsUser"] == 0
    assert lab["allowPrivilegeEscalation"] is False
    assert lab["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "CHOWN", "KILL"]}
    assert lab["seccompProfile"] == {"type": "RuntimeDefault"}
    assert notebook(pod)["workingDir"] == "/"
    assert not any(k.startswith("NB_") for k in env_of(notebook(pod)))


async def test_identity_init_container_never_runs_as_root(build_pod) -> None:
    pod = await build_pod("initcontainer")

    init = pod["spec"]["initContainers"][0]
    assert init["securityContext"]["runAsUser"] == 65534
    assert init["securityContext"]["runAsNonRoot"] is True
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m for m in init["volumeMounts"] if m["name"] == SHARE_VOLUME] == [
        {"name": SHARE_VOLUME, "mountPath": "/nfsuid/share", "readOnly": True}
    ]


@pytest.mark.parametrize("storage", ["existing-pvc", "ensure-pv"])
@pytest.mark.parametrize("source", ["hub", "callable"])
async def test_known_identity_pods_pass_restricted(build_pod, source, storage) -> None:
    assert pss.restricted(await build_pod(source, storage)) == []


async def test_inline_nfs_volume_is_outside_restricted(build_pod) -> None:
    """Restricted allows no inline nfs volume: use a PVC where restricted is enforced."""
    assert pss.restricted(await build_pod("hub", "inline")) == [
        "volume nfsuid-share has type ['nfs']"
    ]


@pytest.mark.parametrize("storage", list(STORAGE))
async def test_initcontainer_pods_pass_baseline(build_pod, storage) -> None:
    assert pss.baseline(await build_pod("initcontainer", storage)) == []


async def test_initcontainer_pods_are_not_restricted(build_pod) -> None:
    """The root that switches users is the one thing restricted forbids."""
    assert pss.restricted(await build_pod("initcontainer")) == [
        "container notebook does not run with runAsNonRoot true",
        "container notebook runAsUser is 0",
        "container notebook adds capabilities ['CHOWN', 'KILL', 'SETGID', 'SETUID']",
    ]


async def test_chart_uid_and_fs_gid_do_not_decide_identity(build_pod) -> None:
    pod = await build_pod("hub", uid=1000, gid=100, fs_gid=100, supplemental_gids=[100])

    assert notebook(pod)["securityContext"]["runAsUser"] == 2001
    assert pod["spec"]["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "1024"}],
    }


@pytest.mark.parametrize("name", ["NB_UID", "NB_USER", "GRANT_SUDO", "CHOWN_HOME", "CHOWN_EXTRA"])
async def test_identity_environment_is_refused(make_spawner, name) -> None:
    spawner = make_spawner({}, username="alice")
    spawner.environment = {name: "1"}

    with pytest.raises(NFSUIDError, match=f"user alice: the environment sets {name} "):
        await spawner.get_pod_manifest()


async def test_profile_override_of_identity_environment_is_refused(make_spawner) -> None:
    spawner = make_spawner({}, username="alice")
    spawner.profile_list = [
        {
            "display_name": "sudo",
            "slug": "sudo",
            "kubespawner_override": {"environment": {"GRANT_SUDO": "yes"}},
        }
    ]
    spawner.user_options = {"profile": "sudo"}
    await spawner.load_user_options()

    with pytest.raises(NFSUIDError, match="sets GRANT_SUDO"):
        await spawner.get_pod_manifest()


async def test_unsafe_opt_in_allows_identity_environment(make_spawner) -> None:
    spawner = make_spawner({"unsafe_allow_identity_overrides": True}, username="alice")
    spawner.environment = {"GRANT_SUDO": "yes"}

    pod = serialize(await spawner.get_pod_manifest())

    assert env_of(notebook(pod))["GRANT_SUDO"] == "yes"


async def test_spawner_never_sets_a_jupyter_token(build_pod) -> None:
    for source in SOURCES:
        assert "JUPYTER_TOKEN" not in env_of(notebook(await build_pod(source)))


async def test_named_servers_share_home_and_identity(make_spawner, hub_share) -> None:
    config = source_config("hub", hub_share)
    pods = [
        serialize(await make_spawner(config, server_name=name).get_pod_manifest())
        for name in ("", "gpu", "scratch")
    ]

    assert len({p["metadata"]["name"] for p in pods}) == 3
    assert len({str(notebook(p)["volumeMounts"]) for p in pods}) == 1
    assert {notebook(p)["securityContext"]["runAsUser"] for p in pods} == {2001}


async def test_lab_opens_at_the_users_home(build_pod) -> None:
    pod = await build_pod("initcontainer", username="Alice.Smith", cmd=["start-singleuser.py"])

    assert "--ServerApp.root_dir=/home/alice.smith" in notebook(pod)["args"]


async def test_callable_identity_must_be_an_identity(make_spawner) -> None:
    spawner = make_spawner({"identity_source": lambda s: (2001, 3001)})

    with pytest.raises(NFSUIDError, match=r"returned \(2001, 3001\), not an nfsuidspawner"):
        await spawner.get_pod_manifest()


async def test_callable_identity_passes_the_guard_rails(make_spawner) -> None:
    spawner = make_spawner({"identity_source": lambda s: Identity(0, 0)})

    with pytest.raises(NFSUIDError, match=r"is owned by uid 0 \(root\)"):
        await spawner.get_pod_manifest()


async def test_callable_identity_must_own_the_hub_visible_directory(make_spawner, hub_share):
    spawner = make_spawner(
        {"identity_source": lambda s: Identity(2002, 3002), "hub_share_path": str(hub_share)}
    )

    with pytest.raises(NFSUIDError, match="owned by uid 2001, but the user is uid 2002"):
        await spawner.get_pod_manifest()


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"nfs_storage": "inline"}, "c.NFSUIDSpawner.nfs_server, c.NFSUIDSpawner.nfs_export_path"),
        ({"identity_source": "hub"}, "c.NFSUIDSpawner.hub_share_path"),
    ],
)
async def test_incomplete_config_names_what_to_set(make_spawner, config, missing) -> None:
    spawner = make_spawner(config)

    with pytest.raises(NFSUIDError, match=f"set {missing} "):
        await spawner.start()

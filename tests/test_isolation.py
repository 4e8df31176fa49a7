"""What a hostile user or a careless admin cannot make a lab pod do.

Each test is one attack or one mistake, tried through the settings a user or an admin
really controls (user options, profiles, config), against the pod the spawner builds.
The sandbox end-to-end tests in tests/e2e/test_attacks.py run the ones that need a lab.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes_asyncio.client import models

from nfsuidspawner import NFSUIDError
from nfsuidspawner.inject import PORT_SYSCTL
from nfsuidspawner.manifests import SHARE_VOLUME

from .conftest import SOURCES, STORAGE, env_of, notebook, serialize

BASE = "quay.io/jupyter/base-notebook:2025-12-31"
SCIPY = "quay.io/jupyter/scipy-notebook:2025-12-31"
PROFILES = [
    {
        "display_name": "Lab",
        "slug": "lab",
        "default": True,
        "kubespawner_override": {"image": BASE},
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "scipy": {"display_name": "SciPy", "kubespawner_override": {"image": SCIPY}}
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "kubespawner_override": {"image": "{value}"},
                },
            }
        },
    }
]


async def spawn_pod(spawner: Any, user_options: dict[str, Any]) -> dict[str, Any]:
    """The pod after JupyterHub and KubeSpawner applied `user_options`, in their order."""
    spawner.user_options = user_options
    await spawner.run_auth_state_hook(None)
    await spawner._run_apply_user_options(user_options)
    await spawner.load_user_options()
    return serialize(await spawner.get_pod_manifest())


def pod_sysctls(pod: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["value"] for s in pod["spec"]["securityContext"]["sysctls"]}


# --- The network side of NFS ---------------------------------------------------------


@pytest.mark.parametrize(("source", "storage"), list(itertools.product(SOURCES, STORAGE)))
async def test_every_lab_pod_gives_privileged_ports_back_to_root(build_pod, source, storage):
    """containerd 2.x opens ports below 1024 to every uid: an NFS `secure` export then
    trusts a lab's userspace NFS client that claims any uid."""
    pod = await build_pod(source, storage)

    assert pod_sysctls(pod)[PORT_SYSCTL] == "1024"


async def test_the_pod_security_context_keeps_the_admins_own_settings(build_pod):
    admin = {
        "seLinuxOptions": {"level": "s0:c123,c456"},
        "appArmorProfile": {"type": "RuntimeDefault"},
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/lab.json"},
        "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "300"}],
        "runAsUser": 0,
        "fsGroup": 100,
    }
    pod = await build_pod("hub", pod_security_context=admin)

    context = pod["spec"]["securityContext"]
    assert context["seLinuxOptions"] == {"level": "s0:c123,c456"}
    assert context["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert context["seccompProfile"]["type"] == "Localhost"
    assert pod_sysctls(pod) == {"net.ipv4.tcp_keepalive_time": "300", PORT_SYSCTL: "1024"}
    assert "runAsUser" not in context and "fsGroup" not in context


async def test_a_lower_unprivileged_port_start_is_refused(make_spawner):
    spawner = make_spawner(
        {"pod_security_context": {"sysctls": [{"name": PORT_SYSCTL, "value": "0"}]}}
    )

    with pytest.raises(
        NFSUIDError, match=f"user alice: the pod securityContext sets {PORT_SYSCTL}=0"
    ):
        await spawner.get_pod_manifest()


async def test_a_higher_unprivileged_port_start_is_kept(build_pod):
    pod = await build_pod(
        "hub", pod_security_context={"sysctls": [{"name": PORT_SYSCTL, "value": "2000"}]}
    )

    assert pod_sysctls(pod) == {PORT_SYSCTL: "2000"}


async def test_no_container_keeps_net_bind_service(build_pod):
    """A sidecar with the runtime's default capabilities would hold NET_BIND_SERVICE; so
    would the chart's iptables initContainer (a V1Container object, not a dict)."""
    blocker = models.V1Container(
        name="block-cloud-metadata",
        image="quay.io/jupyterhub/k8s-network-tools:4.4.0",
        security_context=models.V1SecurityContext(
            privileged=True, capabilities=models.V1Capabilities(add=["NET_ADMIN"])
        ),
    )
    pod = await build_pod(
        "initcontainer",
        extra_containers=[{"name": "sidecar", "image": "busybox"}],
        init_containers=[blocker],
    )

    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        dropped = container["securityContext"]["capabilities"]["drop"]
        assert {"ALL", "NET_BIND_SERVICE"} & set(dropped), container["name"]


async def test_a_container_that_adds_net_bind_service_is_refused(make_spawner):
    sidecar = {
        "name": "proxy",
        "image": "nginx",
        "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
    }
    spawner = make_spawner({"extra_containers": [sidecar]})

    with pytest.raises(NFSUIDError, match="container 'proxy' of the lab pod adds the NET_BIND"):
        await spawner.get_pod_manifest()


# --- The initcontainer source's root phase ----------------------------------------------


async def test_home_is_read_only_in_the_lab(build_pod):
    """/home outlived a container restart, writable: a .pth under /home/jovyan/.local ran
    as root in the next root phase."""
    pod = await build_pod("initcontainer")

    [home] = [m for m in notebook(pod)["volumeMounts"] if m["mountPath"] == "/home"]
    assert home["readOnly"] is True


@pytest.mark.parametrize(("source", "policy"), [("initcontainer", "Never"), ("hub", "OnFailure")])
async def test_a_lab_that_starts_as_root_never_restarts_in_its_pod(build_pod, source, policy):
    pod = await build_pod(source)

    assert pod["spec"]["restartPolicy"] == policy


async def test_the_root_phase_has_roots_own_home(build_pod):
    """For a hub user named jovyan, the image's HOME would be their own NFS directory."""
    pod = await build_pod("initcontainer", username="alice", environment={"HOME": "/home/alice"})

    assert env_of(notebook(pod))["HOME"] == "/root"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PYTHONPATH", "/home/alice/lib"),
        ("PATH", "/data/hpc/home/alice/bin:/usr/bin"),
        ("CONDARC", "/home/alice/.condarc"),
        ("LD_PRELOAD", "/data/hpc/home/alice/x.so"),
        ("PATH", "data/hpc/home/alice/bin:/usr/bin"),
        ("LD_LIBRARY_PATH", "/usr/lib;/data/hpc/home/alice"),
        ("LD_AUDIT", "/home/alice/audit.so"),
    ],
    ids=["pythonpath", "path", "condarc", "preload", "relative", "semicolon", "audit"],
)
async def test_root_phase_environment_into_user_writable_paths_is_refused(
    make_spawner, name, value
):
    spawner = make_spawner({"environment": {name: value}})

    with pytest.raises(NFSUIDError, match=f"user alice: the environment sets {name}="):
        await spawner.get_pod_manifest()


async def test_a_writable_volume_over_a_hook_directory_is_refused(make_spawner):
    spawner = make_spawner(
        {
            "volumes": [{"name": "hooks", "emptyDir": {}}],
            "volume_mounts": [{"name": "hooks", "mountPath": "/usr/local/bin/before-notebook.d"}],
        }
    )

    with pytest.raises(NFSUIDError, match=r"writable mount at /usr/local/bin/before-notebook\.d"):
        await spawner.get_pod_manifest()


async def test_a_writable_volume_over_etc_is_refused(make_spawner):
    spawner = make_spawner(
        {
            "volumes": [{"name": "sudo", "persistentVolumeClaim": {"claimName": "sudoers"}}],
            "volume_mounts": [{"name": "sudo", "mountPath": "/etc/sudoers.d"}],
        }
    )

    with pytest.raises(NFSUIDError, match=r"writable mount at /etc/sudoers\.d, over /etc"):
        await spawner.get_pod_manifest()


@pytest.mark.parametrize(
    "config",
    [
        {"extra_share_mounts": [{"subPath": "datasets", "mountPath": "/data/hpc/home/alice/d"}]},
        {
            "volumes": [{"name": "cfg", "configMap": {"name": "lab"}}],
            "volume_mounts": [{"name": "cfg", "mountPath": "/data/hpc/home/alice/cfg"}],
        },
    ],
    ids=["extra-share-mount", "config-map"],
)
async def test_a_mount_inside_the_users_own_directory_is_refused(make_spawner, config):
    """The user can make the mount point a link (to a hook directory, say) before it is used."""
    spawner = make_spawner(config)

    with pytest.raises(NFSUIDError, match="inside /home or the user's directory"):
        await spawner.get_pod_manifest()


async def test_a_read_only_config_map_of_hooks_is_the_admins_to_give(build_pod):
    pod = await build_pod(
        "initcontainer",
        volumes=[{"name": "hooks", "configMap": {"name": "site-hooks"}}],
        volume_mounts=[{"name": "hooks", "mountPath": "/usr/local/bin/before-notebook.d"}],
    )

    assert "/usr/local/bin/before-notebook.d" in [
        m["mountPath"] for m in notebook(pod)["volumeMounts"]
    ]


async def test_a_free_form_image_is_refused(make_spawner):
    """profile_options' unlisted_choice: the user types any image, whose start.sh runs as root."""
    spawner = make_spawner({"profile_list": PROFILES})
    options = {"profile": "lab", "image--unlisted-choice": "docker.io/mallory/rootkit:latest"}

    with pytest.raises(
        NFSUIDError, match=r"the image 'docker\.io/mallory/rootkit:latest' is not in"
    ):
        await spawn_pod(spawner, options)


@pytest.mark.parametrize(
    "options", [{}, {"profile": "lab", "image": "scipy"}], ids=["default", "listed"]
)
async def test_images_the_admin_named_run(make_spawner, options):
    spawner = make_spawner({"profile_list": PROFILES})

    pod = await spawn_pod(spawner, options)

    assert notebook(pod)["image"] in (BASE, SCIPY)


async def test_a_free_form_image_matching_allowed_images_runs(make_spawner):
    spawner = make_spawner({"profile_list": PROFILES, "allowed_images": ["quay.io/jupyter/*"]})
    options = {"profile": "lab", "image--unlisted-choice": "quay.io/jupyter/r-notebook:2025-12-31"}

    pod = await spawn_pod(spawner, options)

    assert notebook(pod)["image"] == "quay.io/jupyter/r-notebook:2025-12-31"


async def test_an_image_from_apply_user_options_is_refused(make_spawner):
    spawner = make_spawner({})
    spawner.apply_user_options = {"image_input": "image"}

    with pytest.raises(NFSUIDError, match="the image 'evil:1' is not in"):
        await spawn_pod(spawner, {"image_input": "evil:1"})


@pytest.mark.parametrize(
    ("trait", "value"),
    [
        ("cmd", ["bash", "-c", "id"]),
        ("lifecycle_hooks", {"postStart": {"exec": {"command": ["sh", "-c", "id"]}}}),
        ("extra_container_config", {"command": ["sh", "-c", "id"]}),
    ],
)
async def test_a_command_from_user_input_is_refused(make_spawner, trait, value):
    def apply(spawner: Any, options: dict[str, Any]) -> None:
        setattr(spawner, trait, value)

    spawner = make_spawner({})
    spawner.apply_user_options = apply

    with pytest.raises(NFSUIDError, match=f"user alice: {trait} came from user input"):
        await spawn_pod(spawner, {"anything": "x"})


async def test_user_input_of_an_earlier_start_does_not_carry_over(make_spawner):
    """The hub reuses the Spawner: a cmd typed in a refused start stayed in the trait, and
    the next start passed it off as the admin's, running it as root instead of start.sh."""
    profiles = [
        {
            "display_name": "Lab",
            "slug": "lab",
            "profile_options": {
                "start": {
                    "display_name": "Start command",
                    "choices": {"lab": {"display_name": "Lab", "default": True}},
                    "unlisted_choice": {
                        "enabled": True,
                        "display_name": "Other",
                        "kubespawner_override": {"cmd": ["{value}"]},
                    },
                }
            },
        }
    ]
    spawner = make_spawner({"profile_list": profiles, "cmd": ["start-singleuser.py"]})
    with pytest.raises(NFSUIDError, match="cmd came from user input"):
        await spawn_pod(spawner, {"profile": "lab", "start--unlisted-choice": "/bin/sh"})

    pod = await spawn_pod(spawner, {"profile": "lab", "start": "lab"})

    assert notebook(pod)["args"][0] == "start-singleuser.py"


async def test_the_hub_source_runs_any_image_as_the_user(make_spawner, hub_share):
    spawner = make_spawner({"identity_source": "hub", "hub_share_path": str(hub_share)})
    spawner.apply_user_options = {"image_input": "image"}

    pod = await spawn_pod(spawner, {"image_input": "docker.io/someone/own-image:1"})

    assert notebook(pod)["securityContext"]["runAsUser"] == 2001


# --- Configuration that would silently undo isolation ---------------------------------


async def test_skipping_start_sh_is_refused_even_with_the_unsafe_opt_in(make_spawner):
    spawner = make_spawner(
        {"environment": {"_START_SH_EXECUTED": "1"}, "unsafe_allow_identity_overrides": True}
    )

    with pytest.raises(NFSUIDError, match="sets _START_SH_EXECUTED, which makes the image's"):
        await spawner.get_pod_manifest()


async def test_env_from_on_the_lab_container_is_refused(make_spawner):
    spawner = make_spawner(
        {"extra_container_config": {"envFrom": [{"configMapRef": {"name": "lab-env"}}]}}
    )

    with pytest.raises(NFSUIDError, match="takes its environment from envFrom"):
        await spawner.get_pod_manifest()


async def test_env_from_passes_with_the_unsafe_opt_in(build_pod):
    pod = await build_pod(
        "initcontainer",
        extra_container_config={"envFrom": [{"configMapRef": {"name": "lab-env"}}]},
        unsafe_allow_identity_overrides=True,
    )

    assert notebook(pod)["envFrom"] == [{"configMapRef": {"name": "lab-env"}}]


async def test_env_entries_given_as_dicts_are_checked_not_crashed_on(build_pod, make_spawner):
    harmless = {"env": [{"name": "TZ", "value": "UTC"}]}
    assert (
        env_of(notebook(await build_pod("initcontainer", extra_container_config=harmless)))["TZ"]
        == "UTC"
    )

    spawner = make_spawner({"extra_container_config": {"env": [{"name": "NB_UID", "value": "0"}]}})
    with pytest.raises(NFSUIDError, match="the environment sets NB_UID"):
        await spawner.get_pod_manifest()


@pytest.mark.parametrize(
    ("storage", "volume"),
    [
        (
            "existing-pvc",
            {"name": "scratch", "persistentVolumeClaim": {"claimName": "hpc-shared-pvc"}},
        ),
        ("inline", {"name": "scratch", "nfs": {"server": "aixsky.msxf.local", "path": "/hpc"}}),
        (
            "inline",
            {"name": "scratch", "nfs": {"server": "aixsky.msxf.local", "path": "/hpc/home"}},
        ),
    ],
    ids=["same-claim", "same-export", "part-of-export"],
)
async def test_a_second_volume_of_the_share_is_refused(make_spawner, storage, volume):
    """A leftover volume mounts the whole share beside the user's own directory."""
    spawner = make_spawner(
        STORAGE[storage]
        | {"volumes": [volume], "volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}]}
    )

    with pytest.raises(NFSUIDError, match="volume 'scratch' of the lab pod mounts the share"):
        await spawner.get_pod_manifest()


async def test_a_sidecar_that_mounts_the_whole_share_is_refused(make_spawner):
    sidecar = {
        "name": "sync",
        "image": "busybox",
        "volumeMounts": [{"name": SHARE_VOLUME, "mountPath": "/share"}],
    }
    spawner = make_spawner({"extra_containers": [sidecar]})

    with pytest.raises(NFSUIDError, match="container 'sync' mounts the share volume"):
        await spawner.get_pod_manifest()


async def test_a_template_that_merges_users_is_refused_at_spawn(make_spawner):
    spawner = make_spawner({"home_dir_template": "home/{unescaped_username[0]}"})

    with pytest.raises(NFSUIDError, match="does not give each user a directory of their own"):
        await spawner.get_pod_manifest()


@pytest.mark.parametrize(
    "config",
    [
        {
            "extra_share_mounts": [
                {
                    "subPath": "projects/p1",
                    "mountPath": "/usr/local/bin/before-notebook.d",
                    "readOnly": False,
                }
            ]
        },
        {
            "extra_share_mounts": [
                {"subPath": "projects/p1", "mountPath": "/data/hpc/projects/p1", "readOnly": False}
            ],
            "environment": {"PYTHONPATH": "/data/hpc/projects/p1/lib"},
        },
    ],
    ids=["over-a-hook-directory", "on-the-root-phases-path"],
)
async def test_a_writable_project_never_reaches_the_root_phase(make_spawner, config):
    """Any member of the project could put code there for another member's root phase."""
    spawner = make_spawner(config)

    with pytest.raises(NFSUIDError, match="user alice: "):
        await spawner.get_pod_manifest()


async def test_the_identity_check_never_runs_in_an_image_the_user_chose(make_spawner, hub_share):
    """A user's image could carry an `sh` that skips the check: it runs in the admin's."""
    spawner = make_spawner(
        {"identity_source": "hub", "hub_share_path": str(hub_share), "image": BASE}
    )
    spawner.apply_user_options = {"image_input": "image"}

    pod = await spawn_pod(spawner, {"image_input": "docker.io/mallory/lab:1"})

    assert notebook(pod)["image"] == "docker.io/mallory/lab:1"
    assert pod["spec"]["initContainers"][0]["image"] == BASE


async def test_a_read_only_share_directory_over_a_hook_directory_is_refused(make_spawner):
    """Read-only here, but whoever can write projects/tools elsewhere writes root's hooks."""
    mount = {"subPath": "projects/tools", "mountPath": "/usr/local/bin/before-notebook.d"}
    spawner = make_spawner({"extra_share_mounts": [mount]})

    with pytest.raises(NFSUIDError, match="puts a directory of the share at /usr/local/bin"):
        await spawner.get_pod_manifest()

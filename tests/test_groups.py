"""The lab's supplementary groups: where they come from, the guard rails, and the pod.

NSS is read from the test's own /etc/passwd and /etc/group, bound over this machine's in a
mount namespace of its own: never the machine's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from nfsuidspawner import NFSUIDError, pss, sources
from nfsuidspawner.groups import Group, check_groups
from nfsuidspawner.identity import IMAGE_ACCOUNT_NAMES
from nfsuidspawner.manifests import RUN_VOLUME

from .conftest import env_of, notebook, run_with_own_etc

P1, P2 = (5001, "p1"), (5002, "p2")


def granted(
    found: list[tuple[int, Any]], **kwargs: Any
) -> tuple[tuple[Group, ...], tuple[str, ...]]:
    options = {"primary_gid": 3001, "own_name": "alice", "min_gid": 1000}
    options |= {"allowed_low_gids": [], "reserved_names": IMAGE_ACCOUNT_NAMES} | kwargs
    groups = check_groups(found, **options)
    return groups.granted, groups.refused


def test_groups_that_pass_are_granted_in_order() -> None:
    assert granted([P1, P2]) == ((Group(*P1), Group(*P2)), ())


@pytest.mark.parametrize(
    ("group", "why"),
    [
        ((0, "wheel"), "gid 0 is never granted"),
        ((65534, "nogroup"), "gid 65534 is never granted"),
        ((50, "staff2"), "gid 50 is below min_gid 1000 (list it in allowed_low_gids to grant it)"),
        ((5003, "Proj"), "'Proj' is not a group name groupadd takes"),
        ((5003, "a;b"), "'a;b' is not a group name groupadd takes"),
        ((5003, ""), "'' is not a group name groupadd takes"),
        ((5003, "sudo"), "the image already has a group named 'sudo'"),
    ],
    ids=["root", "nobody", "low", "uppercase", "shell", "no-name", "image-name"],
)
def test_a_group_that_fails_is_left_out_saying_why(group: tuple[int, str], why: str) -> None:
    kept, refused = granted([P1, group])

    assert kept == (Group(*P1),)
    assert refused == (f"group {group[1]} ({group[0]}) is left out: {why}",)


def test_a_low_gid_the_admin_allows_is_granted() -> None:
    assert granted([(100, "research")], allowed_low_gids=[100])[0] == (Group(100, "research"),)


def test_a_group_listed_twice_is_granted_once() -> None:
    kept, refused = granted([P1, P1, (5001, "other")])

    assert kept == (Group(*P1),)
    assert len(refused) == 2 and all("listed twice" in r for r in refused)


def test_the_primary_group_is_not_a_supplementary_one() -> None:
    assert granted([(3001, "alice"), P1]) == ((Group(*P1),), ())


def test_the_users_own_group_is_dropped_by_name_without_a_word() -> None:
    """The initcontainer source's hub does not know the primary gid: NSS lists the user's
    private group, which start.sh makes the primary one."""
    assert granted([(3001, "alice"), P1], primary_gid=None) == ((Group(*P1),), ())


def test_more_than_sixteen_groups_are_all_granted() -> None:
    """NFS AUTH_SYS carries 16; the server can look up more (--manage-gids)."""
    found = [(6000 + i, f"g{i}") for i in range(20)]

    assert len(granted(found)[0]) == 20


# --- The hub's NSS --------------------------------------------------------------------

NSS_PASSWD = "alice:x:2001:3001::/home/alice:/bin/sh\n"
NSS_GROUP = (
    "alice:x:3001:\np1:x:5001:alice,bob\np2:x:5002:carol\np3:x:5003:alice\n"
    "wheel:x:0:alice\nlow:x:50:alice\n"
)


def nss_groups_of(name: str, tmp_path: Path) -> list[list[Any]]:
    """nfsuidspawner's NSS source for `name`, with the test's own passwd and group files."""
    code = f"import json; from nfsuidspawner.sources import _nss_groups; print(json.dumps(_nss_groups({name!r})))"
    result = run_with_own_etc(tmp_path, NSS_PASSWD, NSS_GROUP, [sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nss_lists_the_users_uid_and_the_groups_that_name_the_user(tmp_path: Path) -> None:
    uid, groups = nss_groups_of("alice", tmp_path)

    assert uid == 2001
    assert sorted(map(tuple, groups)) == [
        (0, "wheel"),
        (50, "low"),
        (3001, "alice"),
        (5001, "p1"),
        (5003, "p3"),
    ]


def test_a_name_nss_lacks_gets_no_groups(tmp_path: Path) -> None:
    assert nss_groups_of("mallory", tmp_path) == [None, []]


def test_nss_groups_pass_the_guard_rails(tmp_path: Path) -> None:
    kept, refused = granted([tuple(g) for g in nss_groups_of("alice", tmp_path)[1]])

    assert kept == (Group(*P1), Group(5003, "p3"))
    assert [r.split(":")[0] for r in refused] == [
        "group wheel (0) is left out",
        "group low (50) is left out",
    ]


# --- The pod --------------------------------------------------------------------------


def callable_groups(spawner: Any) -> list[tuple[int, str]]:
    return [P1, P2, (0, "wheel")]


async def test_a_lab_started_as_the_user_gets_its_groups_from_the_pod(build_pod) -> None:
    pod = await build_pod("hub", supplemental_groups=callable_groups)

    assert pod["spec"]["securityContext"]["supplementalGroups"] == [5001, 5002]
    assert "supplementalGroupsPolicy" not in pod["spec"]["securityContext"]
    assert pss.restricted(pod) == []
    for version in ("1.29", "1.37"):
        kubernetes_validate.validate(pod, version, strict=True)


async def test_strict_keeps_the_images_groups_out(build_pod) -> None:
    pod = await build_pod(
        "hub", supplemental_groups=callable_groups, strict_supplemental_groups=True
    )

    assert pod["spec"]["securityContext"]["supplementalGroupsPolicy"] == "Strict"
    for version in ("1.35", "1.37"):
        kubernetes_validate.validate(pod, version, strict=True)


async def test_the_admins_own_supplemental_groups_never_reach_the_lab(build_pod) -> None:
    pod = await build_pod("hub", supplemental_gids=[100, 27])

    assert "supplementalGroups" not in pod["spec"]["securityContext"]


async def test_a_lab_started_as_root_gets_its_groups_from_start_sh(build_pod) -> None:
    """sudo sets the groups from /etc/group: the pod's supplementalGroups would be lost."""
    pod = await build_pod("initcontainer", supplemental_groups=callable_groups)

    assert "supplementalGroups" not in pod["spec"]["securityContext"]
    assert env_of(pod["spec"]["initContainers"][0])["NFSUID_GROUPS"] == "5001:p1 5002:p2"


async def test_names_come_from_read_only_account_files(build_pod) -> None:
    pod = await build_pod("hub")

    mounts = {m["mountPath"]: m for m in notebook(pod)["volumeMounts"]}
    for path, sub_path in (("/etc/passwd", "passwd"), ("/etc/group", "group")):
        assert mounts[path] == {
            "name": RUN_VOLUME,
            "subPath": sub_path,
            "mountPath": path,
            "readOnly": True,
        }


async def test_refused_groups_are_in_the_hubs_log(make_spawner, hub_share, caplog) -> None:
    spawner = make_spawner(
        {
            "identity_source": "hub",
            "hub_share_path": str(hub_share),
            "supplemental_groups": callable_groups,
        }
    )

    await spawner.get_pod_manifest()

    assert "nfsuid: user alice: group wheel (0) is left out: gid 0 is never granted" in (
        caplog.text
    )


async def test_a_callable_that_returns_something_else_is_refused(make_spawner) -> None:
    spawner = make_spawner({"supplemental_groups": lambda spawner: 5001})

    with pytest.raises(NFSUIDError, match=r"supplemental_groups returned 5001, not a list"):
        await spawner.get_pod_manifest()


async def test_the_identity_check_runs_in_the_labs_own_image(build_pod) -> None:
    pod = await build_pod("initcontainer", image="registry.example.org/lab:1")

    assert pod["spec"]["initContainers"][0]["image"] == "registry.example.org/lab:1"


async def test_init_image_overrides_the_labs_image(build_pod) -> None:
    pod = await build_pod("initcontainer", init_image="registry.example.org/busybox:1")

    assert pod["spec"]["initContainers"][0]["image"] == "registry.example.org/busybox:1"


async def test_a_project_mount_can_be_writable(build_pod) -> None:
    mount = {"subPath": "projects/p1", "mountPath": "/data/hpc/projects/p1", "readOnly": False}
    pod = await build_pod("hub", extra_share_mounts=[mount])

    [found] = [m for m in notebook(pod)["volumeMounts"] if m["mountPath"] == mount["mountPath"]]
    assert found["readOnly"] is False


async def test_a_terminal_opens_in_the_home(build_pod) -> None:
    pod = await build_pod("hub")

    assert env_of(notebook(pod))["JUPYTER_CONFIG_PATH"] == "/etc/nfsuid/jupyter"


@pytest.fixture
def nss_says(monkeypatch):
    """The hub's NSS, as the spawner asks it: `nss_says(uid, groups)`."""

    def say(uid: int, groups: list[tuple[int, str]]) -> None:
        monkeypatch.setattr(sources, "_nss_groups", lambda name: (uid, groups))

    return say


async def test_nss_groups_go_only_to_a_lab_of_the_nss_users_uid(make_spawner, hub_share, nss_says):
    """scratch/carol made by mallory (uid 2099) before carol's first login: carol's lab would
    run as mallory, with carol's groups."""
    nss_says(2002, [P1])  # NSS: the hub user alice is uid 2002; her directory is 2001's
    spawner = make_spawner(
        {"identity_source": "hub", "hub_share_path": str(hub_share), "supplemental_groups": "nss"}
    )

    with pytest.raises(NFSUIDError, match="is owned by uid 2001, but the user is uid 2002"):
        await spawner.get_pod_manifest()


async def test_the_init_container_checks_the_nss_users_uid(build_pod, nss_says) -> None:
    nss_says(2001, [P1])

    pod = await build_pod("initcontainer", supplemental_groups="nss")

    assert env_of(pod["spec"]["initContainers"][0])["NFSUID_EXPECT_UID"] == "2001"

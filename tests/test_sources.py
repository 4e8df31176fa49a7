"""The hub-side identity sources: its mount of the share, and NSS."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfsuidspawner import Identity, NFSUIDError
from nfsuidspawner.sources import nss_identity, owner_on_hub_mount


async def owner(hub_share: Path, user: str, home_dir: str | None = None) -> Identity:
    home_dir = home_dir or f"home/{user}"
    return await owner_on_hub_mount(user, str(hub_share), home_dir, "/data/hpc", 5, 1000, 1000)


async def test_hub_mount_gives_the_owner(hub_share: Path) -> None:
    assert await owner(hub_share, "alice") == Identity(2001, 3001)


async def test_missing_directory_is_refused_naming_the_path_users_know(hub_share: Path) -> None:
    with pytest.raises(NFSUIDError) as refused:
        await owner(hub_share, "ghost")

    assert str(refused.value) == (
        "nfsuid: user ghost: /data/hpc/home/ghost does not exist. Fix: create it on the NFS server,"
        " owned by the user's uid and gid"
    )


async def test_stat_error_on_the_hub_names_the_mount_to_fix(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "share"
    not_a_directory.write_text("")
    path = not_a_directory / "home" / "alice"

    with pytest.raises(NFSUIDError) as refused:
        await owner(not_a_directory, "alice")

    assert str(refused.value) == (
        f"nfsuid: user alice: cannot stat {path} on the hub: Not a directory."
        " Fix: mount the share read-only in the hub at c.NFSUIDSpawner.hub_share_path"
    )


async def test_an_alias_link_to_another_users_directory_is_refused(hub_share: Path) -> None:
    (hub_share / "home" / "asmith").symlink_to("bob")

    with pytest.raises(NFSUIDError, match=r"/data/hpc/home/asmith is a symlink"):
        await owner(hub_share, "asmith")


async def test_a_link_in_a_parent_component_is_refused_naming_it(hub_share: Path) -> None:
    """Only the last component was looked at before: homes -> home passed as a directory."""
    (hub_share / "homes").symlink_to("home")

    with pytest.raises(NFSUIDError, match=r"user alice: /data/hpc/homes is a symlink"):
        await owner(hub_share, "alice", "homes/alice")


async def test_a_file_in_a_parent_component_is_not_a_directory(hub_share: Path) -> None:
    (hub_share / "plain").write_text("")

    with pytest.raises(NFSUIDError, match=r"/data/hpc/plain is not a directory"):
        await owner(hub_share, "alice", "plain/alice")


class _Spawner:
    def __init__(self, name: str) -> None:
        self.user = type("User", (), {"name": name})()


def test_nss_identity_reads_passwd() -> None:
    root = nss_identity(_Spawner("root"))

    assert root == Identity(0, 0)


def test_nss_identity_without_an_entry_is_refused() -> None:
    with pytest.raises(NFSUIDError, match="user no-such-user-here: no passwd entry on the hub"):
        nss_identity(_Spawner("no-such-user-here"))


async def test_nss_root_never_becomes_a_lab(make_spawner) -> None:
    """NSS answers for root; the uid guard rail refuses it like any other source."""
    # Even with the account-name check off, which refuses "root" first.
    spawner = make_spawner(
        {"identity_source": nss_identity, "image_account_names": []}, username="root"
    )

    with pytest.raises(NFSUIDError, match=r"is owned by uid 0 \(root\)"):
        await spawner.get_pod_manifest()


async def test_a_missing_hub_mount_is_named_as_the_hubs_trouble(tmp_path: Path) -> None:
    """Not "/data/hpc/home does not exist": the share is fine, the hub's mount is not."""
    with pytest.raises(NFSUIDError, match=f"cannot stat {tmp_path}/gone/home/alice on the hub"):
        await owner(tmp_path / "gone", "alice")

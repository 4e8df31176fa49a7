"""subPaths as a Linux kubelet makes them: links inside the volume are followed, never mounted.

The rules come from Kubernetes' pkg/kubelet/kubelet_pods.go (makeMounts) and
pkg/volume/util/subpath/subpath_linux.go (SafeMakeDir, doBindSubPath, safeOpenSubPath); see
nfsuidspawner/sandbox/subpath.py. The first part runs the kubelet side of a container
(runtime.container_config) on a directory that stands in for a volume; the second runs pods on the
sandbox kubelet (root).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nfsuidspawner.sandbox.runtime import ContainerConfigError, container_config

from .pods import BUSYBOX, Cluster, nfs_volume, sh, user

PREPARE_FAILED = 'failed to prepare subPath for volumeMount "share" of container "c"'
CREATE_FAILED = 'failed to create subPath directory for volumeMount "share" of container "c"'
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {}}


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A volume's host directory, with a directory `outside` beside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "volume").mkdir()
    return tmp_path / "volume"


def prepare(volume: Path, sub_path: str) -> dict:
    """The kubelet side of one container that mounts sub_path of `volume`: its mount."""
    container = {
        "name": "c", "image": BUSYBOX, "command": ["true"],
        "volumeMounts": [{"name": "share", "mountPath": "/home/bob", "subPath": sub_path}],
    }  # fmt: skip
    cfg = container_config(
        POD, container, pod_ip="127.0.90.7", volumes={"share": str(volume)},
        rootfs="/nonexistent", termination_log="/nonexistent", start_error_file="/nonexistent",
    )  # fmt: skip
    return cfg["mounts"][0]


def mounted(volume: Path, sub_path: str) -> str:
    """What the kubelet bind-mounts for sub_path, relative to the (resolved) volume."""
    mount = prepare(volume, sub_path)
    assert mount["volume_dir"] == os.path.realpath(volume)
    return mount["sub_path"]


def refused(volume: Path, sub_path: str) -> ContainerConfigError:
    with pytest.raises(ContainerConfigError) as error:
        prepare(volume, sub_path)
    return error.value


def test_link_to_a_sibling_inside_the_volume_is_followed(volume: Path) -> None:
    (volume / "home" / "alice").mkdir(parents=True)
    (volume / "home" / "bob").symlink_to("alice")

    assert mounted(volume, "home/bob") == "home/alice"


def test_link_climbing_to_a_sibling_with_dotdot_stays_inside_and_is_followed(volume: Path) -> None:
    (volume / "home").mkdir()
    (volume / "data" / "bob").mkdir(parents=True)
    (volume / "home" / "bob").symlink_to("../data/bob")

    assert mounted(volume, "home/bob") == "data/bob"


def test_link_chain_inside_the_volume_is_followed_to_its_end(volume: Path) -> None:
    (volume / "c" / "d").mkdir(parents=True)
    (volume / "b").symlink_to("c/d")
    (volume / "a").symlink_to("b")

    assert mounted(volume, "a") == "c/d"


def test_link_in_an_intermediate_component_is_followed(volume: Path) -> None:
    (volume / "real" / "below").mkdir(parents=True)
    (volume / "link").symlink_to(volume / "real")

    assert mounted(volume, "link/below") == "real/below"


def test_absolute_link_under_the_volumes_host_path_is_followed(volume: Path) -> None:
    (volume / "real").mkdir()
    (volume / "link").symlink_to(volume / "real")

    assert mounted(volume, "link") == "real"


def test_link_to_a_file_inside_the_volume_is_followed(volume: Path) -> None:
    (volume / "hook.sh").write_text("true\n")
    (volume / "current.sh").symlink_to("hook.sh")

    assert mounted(volume, "current.sh") == "hook.sh"


def test_link_to_the_volume_root_mounts_the_whole_volume(volume: Path) -> None:
    (volume / "home").mkdir()
    (volume / "home" / "bob").symlink_to("..")

    assert mounted(volume, "home/bob") == "."


def test_absolute_link_outside_the_volume_is_refused_as_not_within_it(volume: Path) -> None:
    # On a node, /home/bob is the node's own /home/bob: outside the volume.
    (volume / "home").mkdir()
    (volume / "home" / "bob").symlink_to(volume.parent / "outside")

    error = refused(volume, "home/bob")

    assert str(error) == PREPARE_FAILED
    assert "not within volume path" in error.reason


def test_relative_link_climbing_out_of_the_volume_is_refused(volume: Path) -> None:
    (volume / "escape").symlink_to("../outside")

    error = refused(volume, "escape")

    assert str(error) == PREPARE_FAILED
    assert f'subpath "{volume.parent / "outside"}" not within volume path' in error.reason


def test_absolute_subpath_is_refused(volume: Path) -> None:
    assert str(refused(volume, "/etc")) == "error SubPath `/etc` must not be an absolute path"


def test_subpath_with_dotdot_is_refused(volume: Path) -> None:
    assert str(refused(volume, "a/../../etc")) == (
        "unable to provision SubPath `a/../../etc`: must not contain '..'"
    )


def test_missing_subpath_is_created_root_owned_with_the_volume_roots_mode(volume: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the kubelet creates a missing subPath as root")
    volume.chmod(0o2771)  # the kubelet applies the root's bits, setgid included, past the umask

    assert mounted(volume, "a/b") == "a/b"

    for made in (volume / "a", volume / "a" / "b"):
        st = made.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o2771)


def test_missing_subpath_below_a_link_is_created_in_the_links_target(volume: Path) -> None:
    (volume / "real").mkdir()
    (volume / "link").symlink_to("real")

    assert mounted(volume, "link/new") == "real/new"
    assert (volume / "real" / "new").is_dir()


def test_missing_subpath_below_a_link_that_escapes_is_refused_and_not_made(volume: Path) -> None:
    (volume / "out").symlink_to("../outside")

    error = refused(volume, "out/new")

    assert str(error) == CREATE_FAILED
    assert "is outside of allowed base" in error.reason
    assert not (volume.parent / "outside" / "new").exists()


def test_dangling_link_counts_as_missing_and_fails_to_be_created(volume: Path) -> None:
    # os.Stat says missing; mkdirat then meets the link itself: EEXIST.
    (volume / "home").mkdir()
    (volume / "home" / "bob").symlink_to("carol")

    error = refused(volume, "home/bob")

    assert str(error) == CREATE_FAILED
    assert "cannot create directory" in error.reason and "file exists" in error.reason
    assert (volume / "home" / "bob").is_symlink() and not (volume / "home" / "carol").exists()


# --- through the sandbox kubelet (root) ---


def mounting(sub_path: str, script: str = "true", **extra: object) -> list[dict]:
    mounts = [{"name": "share", "mountPath": "/home/bob", "subPath": sub_path}]
    return [sh(script, volumeMounts=mounts, **extra)]


@pytest.mark.sandbox
async def test_container_sees_a_links_target_as_a_plain_directory(cluster: Cluster) -> None:
    (cluster.export / "home" / "alice").mkdir(parents=True)
    (cluster.export / "home" / "alice" / "alices-file").touch()
    (cluster.export / "home" / "bob").symlink_to("alice")

    script = "[ -L /home/bob ] && echo link || echo plain; stat -c %F /home/bob; ls /home/bob"
    await cluster.create("linked", mounting("home/bob", script), volumes=[nfs_volume()])
    pod = await cluster.finished("linked")

    assert pod["status"]["phase"] == "Succeeded", await cluster.explain("linked")
    assert cluster.log("linked").splitlines() == ["plain", "directory", "alices-file"]


@pytest.mark.sandbox
async def test_link_escaping_the_volume_fails_with_the_kubelets_words(cluster: Cluster) -> None:
    outside = cluster.export.parent / "elsewhere"
    outside.mkdir()
    (cluster.export / "home").mkdir()
    (cluster.export / "home" / "bob").symlink_to(outside)

    await cluster.create("escape", mounting("home/bob"), volumes=[nfs_volume()])

    assert await cluster.config_error("escape") == PREPARE_FAILED


@pytest.mark.sandbox
async def test_dangling_link_fails_with_the_kubelets_words_and_makes_nothing(
    cluster: Cluster,
) -> None:
    (cluster.export / "home").mkdir()
    (cluster.export / "home" / "bob").symlink_to("carol")

    await cluster.create("dangling", mounting("home/bob"), volumes=[nfs_volume()])

    assert await cluster.config_error("dangling") == CREATE_FAILED
    assert not (cluster.export / "home" / "carol").exists()


@pytest.mark.sandbox
async def test_missing_subpath_is_created_root_owned(cluster: Cluster) -> None:
    await cluster.create(
        "mksub",
        mounting("new/dir", securityContext=user(1234, 2345)),
        volumes=[nfs_volume()],
    )
    await cluster.finished("mksub")

    st = (cluster.export / "new" / "dir").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)

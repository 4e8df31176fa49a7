"""Fixtures shared by every test tier. Nothing here touches infrastructure at import time."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from kubespawner import clients
from traitlets.config import Config

from nfsuidspawner import Identity, NFSUIDSpawner

from . import hung_mount

# The stand-ins of the start fault tests: test_start_failures, test_adoption, test_other_servers_pods.
pytest_plugins = ("tests.start_stand_ins",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-cluster",
        action="store_true",
        help="also run tests/cluster against the cluster in KUBECONFIG (server-side dry runs)",
    )


class FakeOrmSpawner:
    def __init__(self, name: str) -> None:
        self.name = name
        self.server = None


class FakeUser:
    """The parts of a JupyterHub User that a spawner reads while building a pod."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = 7
        self.url = f"/user/{name}/"
        self.escaped_name = name


@pytest.fixture(scope="session")
def unreachable_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig for a server that is never contacted: building a pod needs no cluster.

    KubeSpawner loads its client config once per process (an lru_cache), so the
    cache is cleared before and after.
    """
    path = tmp_path_factory.mktemp("kube") / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: unit\n"
        "clusters: [{name: unit, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: unit, user: {token: unused}}]\n"
        "contexts: [{name: unit, context: {cluster: unit, user: unit, namespace: default}}]\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        # kubernetes_asyncio reads KUBECONFIG when it is imported, so patch what it read.
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        clients.load_config.cache_clear()
        yield path
        clients.load_config.cache_clear()


@pytest.fixture
def make_spawner(unreachable_kubeconfig: Path) -> Callable[..., NFSUIDSpawner]:
    """Build NFSUIDSpawners from config, as the hub would, without a hub or a cluster.

    Call it inside a running event loop (KubeSpawner makes its API client there).
    """

    def make(
        config: Config | dict[str, Any] | None = None,
        username: str = "alice",
        server_name: str = "",
        spawner_class: type[NFSUIDSpawner] = NFSUIDSpawner,
    ) -> NFSUIDSpawner:
        if config is not None and not isinstance(config, Config):
            config = Config({"NFSUIDSpawner": config})
        return spawner_class(
            _mock=True,
            config=config or Config(),
            user=FakeUser(username),
            orm_spawner=FakeOrmSpawner(server_name),
        )

    return make


# The Jupyter docker-stacks images that the example config and the helm values offer.
DOCKER_STACKS = ("base", "minimal", "scipy", "pytorch", "tensorflow", "datascience", "all-spark")

# Directories on the stand-in share: owner uid and gid, by directory name.
SHARE_OWNERS = {
    "alice": (2001, 3001),
    "bob": (2002, 3002),
    "qiang.guo03": (2003, 3003),
    "Alice.Smith": (2020, 3020),
    "o'neil": (2040, 3040),
}


@pytest.fixture
def hub_share(tmp_path: Path) -> Path:
    """A share root whose home/<name> directories are owned by SHARE_OWNERS, as on NFS."""
    if os.geteuid() != 0:
        pytest.skip("needs root: chowns the stand-in share to the users' uids")
    root = tmp_path / "share"
    make_homes(root / "home", SHARE_OWNERS)
    return root


def make_homes(home: Path, owners: dict[str, tuple[int, int]]) -> None:
    """Under `home`, a 0700 directory per name, owned by its (uid, gid) as on the share."""
    for name, (uid, gid) in owners.items():
        (home / name).mkdir(parents=True, mode=0o700)
        os.chown(home / name, uid, gid)


# Spawner settings for each way the share reaches the pod.
STORAGE = {
    "existing-pvc": {"nfs_storage": "existing-pvc"},
    "inline": {
        "nfs_storage": "inline",
        "nfs_server": "aixsky.msxf.local",
        "nfs_export_path": "/hpc",
    },
    "ensure-pv": {
        "nfs_storage": "ensure-pv",
        "nfs_server": "aixsky.msxf.local",
        "nfs_export_path": "/hpc",
    },
}


def callable_source(spawner: Any) -> Identity:
    return Identity(*SHARE_OWNERS[spawner.user.name])


async def async_callable_source(spawner: Any) -> Identity:
    return callable_source(spawner)


SOURCES = ["initcontainer", "hub", "callable", "async-callable"]


def source_config(source: str, hub_share: Path | None) -> dict[str, Any]:
    if source == "hub":
        return {"identity_source": "hub", "hub_share_path": str(hub_share)}
    if source == "callable":
        return {"identity_source": callable_source}
    if source == "async-callable":
        return {"identity_source": async_callable_source}
    return {"identity_source": "initcontainer"}


@pytest.fixture
def build_pod(make_spawner, hub_share):
    """Build the pod for an identity source and storage way, as a camelCase dict."""

    async def build(
        source: str, storage: str = "existing-pvc", username: str = "alice", **extra: Any
    ) -> dict[str, Any]:
        config = source_config(source, hub_share) | STORAGE[storage] | extra
        spawner = make_spawner(config, username=username)
        return serialize(await spawner.get_pod_manifest())

    return build


def notebook(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


@pytest.fixture
async def hung_share() -> AsyncIterator[str]:
    """The path of a share mount whose every stat hangs.

    Async so that its teardown runs while the test's loop still runs: a stat thread,
    once released, hands its result to that loop.
    """
    reason = hung_mount.why_not_possible()
    if reason:
        pytest.skip(reason)
    with hung_mount.hung_mount() as mount:
        yield mount.path
    deadline = time.monotonic() + 5
    while stat_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not stat_threads(), "a stat thread is still stuck after the connection was aborted"
    assert not hung_mount.mounted(mount.path), "the hung mount is still in mountinfo"


def stat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nfsuid-stat"]


def run_with_own_etc(
    tmp_path: Path, passwd: str, group: str, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `argv` with these /etc/passwd and /etc/group bound over this machine's, in a
    mount namespace of its own: the machine's own files are never read or touched."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux): binds test files over /etc")
    etc = tmp_path / "own-etc"
    etc.mkdir()
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    binds = " && ".join(f"mount --bind {etc / f} /etc/{f}" for f in ("passwd", "group"))
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'{binds} && exec "$@"',
            "-",
            *argv,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serialize(obj: Any) -> Any:
    """A kubernetes_asyncio model as the camelCase dict the API server receives."""
    return ApiClient().sanitize_for_serialization(obj)

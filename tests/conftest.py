"""Fixtures shared by every test tier. Nothing here touches infrastructure at import time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.config import kube_config
from kubespawner import clients
from traitlets.config import Config

from nfsuidspawner import NFSUIDSpawner


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


@pytest.fixture
def unreachable_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for a server that is never contacted: building a pod needs no cluster.

    KubeSpawner loads its client config once per process (an lru_cache), so the
    cache is cleared before and after.
    """
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: unit\n"
        "clusters: [{name: unit, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: unit, user: {token: unused}}]\n"
        "contexts: [{name: unit, context: {cluster: unit, user: unit, namespace: default}}]\n"
    )
    # kubernetes_asyncio reads KUBECONFIG when it is imported, so patch what it read.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
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
        if isinstance(config, dict):
            config = Config({"NFSUIDSpawner": config})
        return spawner_class(
            _mock=True,
            config=config or Config(),
            user=FakeUser(username),
            orm_spawner=FakeOrmSpawner(server_name),
        )

    return make

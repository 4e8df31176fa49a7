"""NFSUIDSpawners built from a site's own config, outside the hub and without a cluster.

`audit` and `render` ask the spawner itself, so that what they say is what a spawn does.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from traitlets.config import Config, PyFileConfigLoader

from .spawner import NFSUIDSpawner


def load_config(path: str | None) -> Config:
    """The traitlets config of a jupyterhub_config.py, as the hub loads it."""
    if not path:
        return Config()
    file = Path(path).resolve()
    return PyFileConfigLoader(file.name, path=str(file.parent)).load_config()


@contextmanager
def no_cluster() -> Iterator[None]:
    """Building a pod needs a Kubernetes client config, not a cluster: give one that is
    never contacted (KubeSpawner loads its client config once per process)."""
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: offline\n"
            "clusters: [{name: offline, cluster: {server: 'http://127.0.0.1:9'}}]\n"
            "users: [{name: offline, user: {token: unused}}]\n"
            "contexts: [{name: offline, context: {cluster: offline, user: offline}}]\n"
        )
        saved = (
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION,
            os.environ.pop("KUBERNETES_SERVICE_HOST", None),
        )
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
        clients.load_config.cache_clear()
        try:
            yield
        finally:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved[0]
            if saved[1] is not None:
                os.environ["KUBERNETES_SERVICE_HOST"] = saved[1]
            clients.load_config.cache_clear()


def spawner_for(config: Config, user: str, server: str = "", **settings: Any) -> NFSUIDSpawner:
    """The spawner the hub would make for `user`'s server `server`, with `settings` on top
    of the config. Call it in a running event loop, inside :func:`no_cluster`."""
    config = copy.deepcopy(config)
    for name, value in settings.items():
        config.NFSUIDSpawner[name] = value
    return NFSUIDSpawner(
        _mock=True,
        config=config,
        user=SimpleNamespace(name=user, id=0, url=f"/user/{user}/", escaped_name=user),
        orm_spawner=SimpleNamespace(name=server, server=None),
    )

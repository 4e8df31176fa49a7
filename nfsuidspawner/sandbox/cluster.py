"""The sandbox cluster: the API server and the kubelet, started together on loopback."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .apiserver import ApiServer
from .kubelet import DEFAULT_POD_CIDR, Kubelet

# The rule the ensure-pv storage way needs on top of the Zero-to-JupyterHub hub Role.
PV_RULES = [{"resources": ["persistentvolumes"], "verbs": ["get", "create"]}]


class Sandbox:
    """A one-node cluster whose pods are real processes, and a kubeconfig for the hub.

    `exports` maps NFS exports ("server:/path") to the local directories that stand in
    for them. The hub's kubeconfig carries a token bound to the Zero-to-JupyterHub hub
    Role in `namespace` (plus the PersistentVolume rule when `allow_pv` is set). Pods get
    addresses from `pod_cidr` (by default a /16: room for 65,000 pods).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        exports: Mapping[str, str],
        namespace: str = "jupyter-system",
        allow_pv: bool = False,
        pod_cidr: str = DEFAULT_POD_CIDR,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.namespace = namespace
        self.hub_token = secrets.token_hex(16)
        self.admin_token = secrets.token_hex(16)
        self.apiserver = ApiServer(
            tokens={self.hub_token: "hub", self.admin_token: "admin"},
            namespaces=["default", namespace],
            hub_namespace=namespace,
            hub_cluster_rules=PV_RULES if allow_pv else (),
            graceful_pod_deletion=True,
        )
        self.exports = dict(exports)
        self.pod_cidr = pod_cidr
        self.kubelet: Kubelet | None = None
        self.kubeconfig = self.state_dir / "kubeconfig"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        url = await self.apiserver.start(host, port)
        self.kubelet = Kubelet(
            url, self.admin_token, self.state_dir / "kubelet", self.exports, self.pod_cidr
        )
        try:
            await self.kubelet.start()
        except BaseException:
            await self.apiserver.stop()
            raise
        self.apiserver.write_kubeconfig(self.kubeconfig, self.hub_token, self.namespace)

    async def stop(self) -> None:
        if self.kubelet:
            await self.kubelet.stop()
        await self.apiserver.stop()

    async def apply(self, manifests: Sequence[dict[str, Any]]) -> None:
        """Create objects as a cluster admin would with `kubectl create -f`."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for obj in manifests:
                namespace = obj["metadata"].get("namespace")
                plural = obj["kind"].lower() + "s"
                path = (
                    f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"
                )
                async with session.post(self.apiserver.url + path, json=obj) as response:
                    if response.status not in (201, 409):
                        raise RuntimeError(
                            f"cannot create {obj['kind']} {obj['metadata']['name']}:"
                            f" {response.status} {await response.text()}"
                        )


def load_manifests(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The documents of a YAML (or JSON) manifest file."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    return [doc for doc in yaml.safe_load_all(text) if doc]

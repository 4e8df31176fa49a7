"""Fixtures for the sandbox: API servers on loopback, kubernetes_asyncio clients, and a cluster
(an API server and a kubelet running pods as real processes, root only)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api

from nfsuidspawner.sandbox.apiserver import ApiServer
from nfsuidspawner.sandbox.kubelet import Kubelet

from .pods import EXPORT, NS, TOKEN, Cluster, mounts_under, needs_root

TOKENS = {"admin-token": "admin", "hub-token": "hub", "nobody-token": "nobody"}
HUB_NAMESPACE = "jupyter-system"

MakeServer = Callable[..., Awaitable[ApiServer]]
MakeClient = Callable[..., Awaitable[CoreV1Api]]


@pytest.fixture
async def make_apiserver() -> AsyncIterator[MakeServer]:
    """Start ApiServers (defaults: the test tokens, namespaces default and jupyter-system)."""
    servers: list[ApiServer] = []

    async def make(**kwargs: Any) -> ApiServer:
        kwargs.setdefault("tokens", TOKENS)
        kwargs.setdefault("namespaces", ["default", HUB_NAMESPACE])
        kwargs.setdefault("hub_namespace", HUB_NAMESPACE)
        server = ApiServer(**kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def apiserver(make_apiserver: MakeServer) -> ApiServer:
    return await make_apiserver()


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    """CoreV1Api clients configured from a kubeconfig the server wrote, one per token."""
    api_clients: list[ApiClient] = []

    async def make(
        server: ApiServer, token: str = "admin-token", namespace: str = HUB_NAMESPACE
    ) -> CoreV1Api:
        path = tmp_path / f"kubeconfig-{len(api_clients)}"
        server.write_kubeconfig(path, token, namespace)
        configuration = Configuration()
        await config.load_kube_config(config_file=str(path), client_configuration=configuration)
        api_client = ApiClient(configuration=configuration)
        api_clients.append(api_client)
        return CoreV1Api(api_client)

    yield make
    for api_client in api_clients:
        await api_client.close()


@pytest.fixture
async def admin(apiserver: ApiServer, make_client: MakeClient) -> CoreV1Api:
    return await make_client(apiserver)


@pytest.fixture
async def hub(apiserver: ApiServer, make_client: MakeClient) -> CoreV1Api:
    return await make_client(apiserver, token="hub-token")


@pytest.fixture
async def graceful_server(make_apiserver: MakeServer) -> ApiServer:
    """A server that deletes pods in two steps, as it does when a kubelet runs."""
    return await make_apiserver(graceful_pod_deletion=True)


@pytest.fixture
async def graceful_admin(graceful_server: ApiServer, make_client: MakeClient) -> CoreV1Api:
    return await make_client(graceful_server)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An API server and a kubelet whose NFS export nfs.example:/export is tmp_path/export."""
    needs_root()
    export = tmp_path / "export"
    export.mkdir()
    server = ApiServer(tokens={TOKEN: "admin"}, namespaces=[NS], graceful_pod_deletion=True)
    await server.start()
    kubelet = Kubelet(server.url, TOKEN, tmp_path / "state", {EXPORT: str(export)},
                      "127.0.91.0/24", backoff_initial=0.2, backoff_max=0.5)  # fmt: skip
    await kubelet.start()
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        yield Cluster(server, kubelet, export, session)
    finally:
        await kubelet.stop()
        await session.close()
        await server.stop()
    assert mounts_under(tmp_path) == []

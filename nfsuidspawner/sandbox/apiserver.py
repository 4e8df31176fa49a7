"""A small in-process Kubernetes API server (core/v1 only) for the sandbox.

It serves what KubeSpawner, kubernetes_asyncio and the sandbox kubelet use over plain HTTP on
loopback: get, list, watch (with a resourceVersion history), create, replace and delete of a few
core kinds, bearer-token RBAC modelled on the Zero-to-JupyterHub hub Role, strict schema
validation with kubernetes-validate, and pod graceful deletion that waits for a kubelet.

This module only ties the rooms together and runs the listener; each room has one job:

- :mod:`.resources`: the kinds served, what a request URL names, ``Status`` errors;
- :mod:`.storage`: objects, resourceVersions, the change history and watch streams;
- :mod:`.matching`: label and field selectors;
- :mod:`.rbac`: bearer tokens and the hub Role;
- :mod:`.validation`: strict decoding and schema validation (schemas loaded once);
- :mod:`.routes`: the HTTP routes and what each verb does;
- :mod:`.faults`: errors, drops, delays, broken watches and restarts that a test asks for.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence

from aiohttp import web

from .faults import Faults
from .rbac import Rbac
from .resources import Obj
from .routes import Routes
from .storage import Store

__all__ = ["ApiServer"]


class ApiServer:
    """An exact-enough core/v1 Kubernetes API server for one process's tests and sandbox.

    tokens maps bearer tokens to identities: "admin" may do anything; "hub" is the
    ServiceAccount `system:serviceaccount:<hub_namespace>:hub` bound to the z2jh hub Role in
    hub_namespace plus hub_cluster_rules cluster-wide (unless enforce_hub_role is False);
    any other identity has no permissions.

    With graceful_pod_deletion (for when a kubelet runs), deleting a pod with a grace period
    only sets metadata.deletionTimestamp; the pod goes once a delete with gracePeriodSeconds=0
    arrives, which the kubelet sends when the containers are dead.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, str],
        namespaces: Iterable[str] = ("default",),
        hub_namespace: str = "default",
        enforce_hub_role: bool = True,
        hub_cluster_rules: Sequence[Mapping[str, Sequence[str]]] = (),
        graceful_pod_deletion: bool = False,
        kubernetes_version: str = "1.37",
        history_limit: int = 1000,
    ) -> None:
        self.rbac = Rbac(tokens, hub_namespace, enforce_hub_role, hub_cluster_rules)
        self.hub_namespace = hub_namespace
        self.graceful_pod_deletion = graceful_pod_deletion
        self.kubernetes_version = kubernetes_version
        self.url = ""
        self.store = Store(history_limit)
        self.faults = Faults(self)
        self._runner: web.AppRunner | None = None
        self._bound: tuple[str, int] | None = None
        for name in namespaces:
            meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name}}
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
            self.store.insert("namespaces", "", namespace)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (loopback only) and return the base URL."""
        if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"ApiServer binds only to 127.0.0.0/8, not {host}")
        app = Routes(self).app()
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self._bound = (host, bound_port)
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """End every watch stream and stop listening."""
        self.store.end_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, down_seconds: float = 0.0) -> None:
        """Stop listening, wait, and listen again on the same address, as after a crash.

        Open watches end and their clients reconnect; the objects and the change history stay,
        as they would in etcd, so watches resume from their resourceVersions.
        """
        if self._bound is None:
            raise RuntimeError("start() the ApiServer before restarting it")
        host, port = self._bound
        await self.stop()
        await asyncio.sleep(down_seconds)
        await self.start(host, port)

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str, namespace: str) -> None:
        """Write a kubeconfig for this server (JSON, which is YAML) readable only by its owner."""
        if not self.url:
            raise RuntimeError("start() the ApiServer before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace},
                }
            ],
            "current-context": "sandbox",
            "preferences": {},
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)

    def objects(self, plural: str) -> list[Obj]:
        """A copy of the stored objects of one resource (e.g. "pods"), for test assertions."""
        return [copy.deepcopy(o) for _, o in sorted(self.store.objects[plural].items())]

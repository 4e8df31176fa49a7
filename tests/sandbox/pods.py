"""Pods on a sandbox kubelet, for the sandbox tests: the Cluster helper and pod spec builders."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nfsuidspawner.sandbox.apiserver import ApiServer
from nfsuidspawner.sandbox.kubelet import Kubelet

Obj = dict[str, Any]

NS = "default"
TOKEN = "kubelet-token"
EXPORT = "nfs.example:/export"
BUSYBOX = "docker.io/library/busybox:1.37"
NOTEBOOK = "quay.io/jupyter/base-notebook:2025-01-13"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the kubelet enforces uids and mounts for real")
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs util-linux unshare and setpriv")


class Cluster:
    def __init__(
        self, server: ApiServer, kubelet: Kubelet, export: Path, session: aiohttp.ClientSession
    ):
        self.server, self.kubelet, self.export, self.session = server, kubelet, export, session

    async def call(self, method: str, path: str, body: Obj | None = None, **params: str) -> Obj:
        async with self.session.request(
            method, self.server.url + path, json=body, params=params
        ) as r:
            data = await r.json()
            assert r.status < 300, data
            return data

    async def create(
        self,
        name: str,
        containers: list[Obj],
        *,
        init: list[Obj] | None = None,
        volumes: list[Obj] | None = None,
        restart: str = "Never",
        **spec: Any,
    ) -> Obj:
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": containers, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 2, **spec},
        }  # fmt: skip
        if init:
            pod["spec"]["initContainers"] = init
        if volumes:
            pod["spec"]["volumes"] = volumes
        return await self.call("POST", f"/api/v1/namespaces/{NS}/pods", pod)

    async def get(self, name: str) -> Obj | None:
        async with self.session.get(f"{self.server.url}/api/v1/namespaces/{NS}/pods/{name}") as r:
            return await r.json() if r.status == 200 else None

    async def wait(self, name: str, cond: Callable[[Obj], bool], timeout: float = 15) -> Obj:
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            pod = await self.get(name)
            if pod is not None and cond(pod):
                return pod
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; pod: {pod}\n{await self.explain(name)}")

    async def finished(self, name: str) -> Obj:
        return await self.wait(name, lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))

    async def statuses(
        self, created: Obj, until: Callable[[Obj], bool], timeout: float = 15
    ) -> list[Obj]:
        """Every status the pod `created` was given, in order, up to the first of a version
        for which `until` holds (from a watch since its creation)."""
        name, since = created["metadata"]["name"], created["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": str(int(timeout))}
        seen: list[Obj] = []
        async with self.session.get(
            f"{self.server.url}/api/v1/namespaces/{NS}/pods", params=params
        ) as r:
            async for line in r.content:
                pod = json.loads(line)["object"]
                if pod["metadata"]["name"] == name:
                    seen.append(pod["status"])
                    if until(pod):
                        return seen
        raise AssertionError(f"timed out; statuses: {seen}\n{await self.explain(name)}")

    async def events(self, name: str) -> list[Obj]:
        events = [e for e in self.server.objects("events") if e["involvedObject"]["name"] == name]
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    async def explain(self, name: str) -> str:
        """Events and logs, printed when a test fails so that the failure explains itself."""
        lines = [f"{e['reason']}: {e['message']}" for e in await self.events(name)]
        pod = await self.get(name)
        for c in (pod or {}).get("spec", {}).get("initContainers", []) + (pod or {}).get(
            "spec", {}
        ).get("containers", []):
            lines.append(f"--- log {c['name']}:\n{self.kubelet.logs(NS, name, c['name'])}")
        return "\n".join(lines)

    def log(self, name: str, container: str = "c") -> str:
        return self.kubelet.logs(NS, name, container)

    async def wait_for_line(
        self, name: str, line: str, container: str = "c", timeout: float = 15
    ) -> None:
        """Until the container's log has this whole line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.log(name, container).splitlines():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no line {line!r} in the log\n{await self.explain(name)}")

    async def delete(self, name: str, grace: int) -> float:
        """Delete the pod with this grace period; seconds until the kubelet has removed it."""
        start = time.monotonic()
        await self.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}",
                        gracePeriodSeconds=str(grace))  # fmt: skip
        while await self.get(name) is not None:
            assert time.monotonic() - start < grace + 10, await self.explain(name)
            await asyncio.sleep(0.05)
        return time.monotonic() - start

    async def config_error(self, name: str) -> str:
        """The message of the first container's CreateContainerConfigError, once it waits so."""

        def waiting(pod: Obj) -> Obj:
            statuses = pod["status"].get("containerStatuses") or [{}]
            return (statuses[0].get("state") or {}).get("waiting") or {}

        pod = await self.wait(
            name, lambda p: waiting(p).get("reason") == "CreateContainerConfigError"
        )
        assert pod["status"]["phase"] == "Pending"
        return waiting(pod)["message"]


def sh(script: str, name: str = "c", image: str = BUSYBOX, **extra: Any) -> Obj:
    return {"name": name, "image": image, "command": ["sh", "-c", script], **extra}


def user(uid: int, gid: int | None = None, **extra: Any) -> Obj:
    sc: Obj = {"runAsUser": uid, "allowPrivilegeEscalation": False,
               "capabilities": {"drop": ["ALL"]}, **extra}  # fmt: skip
    if gid is not None:
        sc["runAsGroup"] = gid
    return sc


def mounts_under(path: Path) -> list[str]:
    """Host-namespace mounts below path (other test suites may mount elsewhere meanwhile)."""
    return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in ln]


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def needs_sudo() -> None:
    if shutil.which("sudo") is None:
        pytest.skip("needs Debian's sudo (./run installs it): the docker-stacks start.sh uses it")


def nfs_volume(path: str = "/export") -> Obj:
    return {"name": "share", "nfs": {"server": "nfs.example", "path": path}}


ROOT_SWITCH = ("SETUID", "SETGID", "CHOWN")


def notebook(
    args: list[str], hook: bool = True, caps: tuple[str, ...] = ROOT_SWITCH, **extra: Any
) -> Obj:
    """A docker-stacks container started as root with `caps` (the lab's), working dir /."""
    mounts = [{"name": "run", "mountPath": "/usr/local/bin/start-notebook.d/nfsuid-identity.sh",
               "subPath": "nfsuid-identity.sh", "readOnly": True}] if hook else []  # fmt: skip
    return {
        "name": "notebook", "image": NOTEBOOK, "args": args, "workingDir": "/",
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": list(caps)}},
        "volumeMounts": mounts, **extra,
    }  # fmt: skip


def identity_init(script: str) -> list[Obj]:
    return [sh(script, name="nfsuid-identity", securityContext=user(65534, 65534),
               volumeMounts=[{"name": "run", "mountPath": "/nfsuid/run"}])]  # fmt: skip

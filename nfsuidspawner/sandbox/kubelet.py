"""The sandbox kubelet: runs the pods of a Kubernetes API server as real processes here.

It is an ordinary HTTP client of the API server, like a real kubelet: it lists and watches all
pods, runs each new one (volumes, init containers in order, then the containers, restarts with
back-off per restartPolicy), PUTs pods/NAME/status, POSTs events, and finishes a graceful
deletion (SIGTERM, SIGKILL after the grace period) with a DELETE with gracePeriodSeconds=0.
Each container runs through the shim (:mod:`nfsuidspawner.sandbox.shim`) in private namespaces
with the uid, gids and capabilities of its securityContext, enforced by the kernel.

Every pod gets its own 127.x.y.z address from a pool. There are no network namespaces, so a
Jupyter server asked to bind 0.0.0.0 binds the pod IP instead (see runtime.py).

This module is the node: it starts and stops, and turns pod events into pod tasks. Its rooms:

- :mod:`.kubeclient`: requests to the API server, and the list-and-watch loop;
- :mod:`.pod` and :mod:`.podstatus`: one pod's lifecycle, and what is reported about it;
- :mod:`.volumes`: a pod's volumes as host directories;
- :mod:`.podips`: the pod address pool;
- :mod:`.runtime`, :mod:`.shim` and :mod:`.rootfs`: the container runtime.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from .kubeclient import ApiClient, ApiStatusError
from .pod import Pod
from .podips import AddressPool, container_ports
from .rootfs import SYS_PIVOT_ROOT
from .runtime import Obj
from .volumes import Volumes

__all__ = ["Kubelet", "KubeletError"]

log = logging.getLogger(__name__)

# A /16 (65,533 pod addresses), so that a burst of hundreds of pods does not run out; clear of
# the /24s that tests and benchmarks pick (127.0.9x.0/24, the e2e fixture's 127.100-249.x.0/24).
DEFAULT_POD_CIDR = "127.90.0.0/16"


class KubeletError(RuntimeError):
    """The kubelet cannot run here (e.g. not root)."""


class Kubelet:
    """Runs the pods of the API server at `api_url` as real processes on this machine.

    exports maps an NFS export "server:/path" to the local directory standing in for it;
    subdirectories of an export may be mounted too. pod_cidr (in 127.0.0.0/8) is the pod
    address pool: the first address is the gateway, pods get the following ones.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        state_dir: str | os.PathLike[str],
        exports: dict[str, str],
        pod_cidr: str = DEFAULT_POD_CIDR,
        *,
        node_name: str = "sandbox-node",
        host_ip: str = "127.0.0.1",
        backoff_initial: float = 1.0,
        backoff_max: float = 10.0,
        probe_interval: float = 0.2,
        relist_period: float = 1.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.state_dir = Path(state_dir)
        self.exports = dict(exports)
        self._addresses = AddressPool(pod_cidr)
        self.network = self._addresses.network
        self.node_name = node_name
        self.host_ip = host_ip
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.probe_interval = probe_interval
        self.relist_period = relist_period
        self._client = ApiClient(self.api_url, token)
        self.volumes = Volumes(self.exports, self.api)
        self._pods: dict[str, Pod] = {}
        self.latest_logs: dict[tuple[str, str], Path] = {}  # (namespace, pod) -> its log dir
        self._watch_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public ---

    async def start(self) -> None:
        """Check that pods can be isolated here, then list and watch pods."""
        if os.geteuid() != 0:
            raise KubeletError(
                "the sandbox kubelet must run as root: as another user it cannot enforce "
                "runAsUser/runAsGroup/supplementalGroups, capabilities, private mount and PID "
                "namespaces or bind-mounted volumes"
            )
        if not hasattr(os, "O_PATH") or os.uname().machine not in SYS_PIVOT_ROOT:
            raise KubeletError(f"unsupported platform for the sandbox runtime: {os.uname()}")
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self._client.open()
        rv = await self._relist()
        self._watch_task = asyncio.create_task(
            self._client.watch("/api/v1/pods", rv, self._handle, self._relist)
        )

    async def stop(self) -> None:
        """Kill every pod process (SIGTERM, then SIGKILL after 2 s). Pod objects are left as is."""
        if self._watch_task:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        for p in list(self._pods.values()):
            if p.deleting:
                p.deleting.cancel()
                await asyncio.gather(p.deleting, return_exceptions=True)
        pods = list(self._pods.values())
        await asyncio.gather(*(p.kill(2.0, events=False) for p in pods))
        for p in pods:
            p.cleanup()
        self._pods.clear()
        self._addresses.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.close()

    def logs(self, namespace: str, pod: str, container: str, previous: bool = False) -> str:
        """A container's stdout+stderr (current run, or the one before with previous=True)."""
        logdir = self.latest_logs.get((namespace, pod))
        if logdir is None:
            candidates = sorted((self.state_dir / "logs" / namespace / pod).glob("*"),
                                key=lambda p: p.stat().st_mtime)  # fmt: skip
            if not candidates:
                return ""
            logdir = candidates[-1]
        runs = sorted(logdir.glob(f"{container}.*.log"), key=lambda p: int(p.name.split(".")[-2]))
        if len(runs) < (2 if previous else 1):
            return ""
        return runs[-2 if previous else -1].read_text(errors="replace")

    # --- API ---

    async def api(self, method: str, path: str, body: Obj | None = None,
                  params: dict[str, str] | None = None) -> Obj:  # fmt: skip
        """One request to the API server (ApiStatusError for an answer of 300 or more)."""
        return await self._client.request(method, path, body, params)

    async def _relist(self) -> str:
        result = await self.api("GET", "/api/v1/pods")
        seen = set()
        for pod in result["items"]:
            seen.add(pod["metadata"]["uid"])
            self._handle("MODIFIED", pod)
        for uid in [u for u in self._pods if u not in seen]:
            self._handle("DELETED", self._pods[uid].pod)
        return result["metadata"]["resourceVersion"]

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def _handle(self, type_: str, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        known = self._pods.get(uid)
        if type_ == "DELETED":
            if known:
                known.gone = True
                if not known.deleting:  # else the graceful deletion finishes on its own
                    self._spawn(self._vanished(known))
            return
        if known:
            known.pod = pod
            if meta.get("deletionTimestamp") and not known.deleting:
                known.deleting = self._spawn(known.delete())
            return
        if meta.get("deletionTimestamp"):
            # Never ran here: nothing to stop, finish the deletion.
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            self._spawn(self._final_delete(path))
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        ip = self._allocate_ip(container_ports(pod))
        p = Pod(self, pod, ip)
        self._pods[uid] = p
        p.task = self._spawn(p.run())

    async def _final_delete(self, path: str) -> None:
        try:
            await self.api("DELETE", path, params={"gracePeriodSeconds": "0"})
        except ApiStatusError as e:
            if e.status != 404:
                raise

    async def _vanished(self, p: Pod) -> None:
        """The pod object is gone (force deletion): kill at once, no API calls."""
        await p.kill(0.0, events=False)
        self.forget(p)

    def forget(self, p: Pod) -> None:
        """Drop a pod that is gone: its address returns to the pool, its directories go."""
        if self._pods.get(p.uid) is p:
            del self._pods[p.uid]
            self._addresses.release(p.ip)
            p.cleanup()

    def _allocate_ip(self, ports: list[int]) -> str:
        """The lowest free pod address whose `ports` no other process on this machine holds."""
        address = self._addresses.allocate(ports)
        if address is None:
            raise KubeletError(f"pod address pool {self.network} is exhausted")
        return address


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sandbox kubelet task failed", exc_info=task.exception())

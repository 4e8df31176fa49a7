"""What the sandbox kubelet reports about a pod: its status, and events.

:class:`PodReport` holds a pod's identity and observed state (phase, conditions, the state of
each :class:`Container`) and reports them the way a kubelet does: ``PUT pods/NAME/status``
(read first for the newest resourceVersion, conflicts retried) and ``POST events``. The
lifecycle that changes that state is :class:`.pod.Pod`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp

from . import runtime
from .kubeclient import ApiStatusError
from .runtime import Obj

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

# What names the pod in a status update: the server checks the version, keeps the rest.
POD_KEY_METADATA = ("name", "namespace", "uid", "resourceVersion")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    """One container of a pod: its spec, its state as reported, and its process."""

    spec: Obj
    init: bool
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str | None = None
    proc: asyncio.subprocess.Process | None = None
    init_pid: int | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def succeeded(self) -> bool:
        return (self.state.get("terminated") or {}).get("exitCode") == 0

    @property
    def field_path(self) -> str:
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def status(self) -> Obj:
        image = self.spec.get("image", "")
        out: Obj = {
            "name": self.name,
            "image": image,
            "imageID": runtime.image_id(image) if self.container_id else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


class PodReport:
    """A pod's identity and observed state, and the status and events reported from them."""

    def __init__(self, kubelet: Kubelet, pod: Obj, ip: str):
        self.k = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.ip = ip
        spec = pod["spec"]
        self.inits = [Container(c, True) for c in spec.get("initContainers") or []]
        self.mains = [Container(c, False) for c in spec.get("containers") or []]
        self.start_time = now()
        self.initialized = not self.inits
        self.final_phase: str | None = None
        self.conditions: dict[str, tuple[str, str]] = {}
        self.push_lock = asyncio.Lock()
        self.gone = False

    def phase(self) -> str:
        if self.final_phase:
            return self.final_phase
        if not self.initialized or not any(c.started or c.restart_count for c in self.mains):
            return "Pending"
        return "Running"

    def _condition(self, type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        old = self.conditions.get(type_)
        if old is None or old[0] != status:
            self.conditions[type_] = (status, now())
        cond: Obj = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions[type_][1],
        }
        if not ok and reason:
            cond["reason"] = reason
            cond["message"] = message
        return cond

    def status(self) -> Obj:
        phase = self.phase()
        unready = [c.name for c in self.mains if not c.ready]
        uninit = [c.name for c in self.inits if not c.succeeded]
        done_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        ready_msg = (
            ""
            if done_reason == "PodCompleted"
            else f"containers with unready status: [{' '.join(unready)}]"
        )
        return {
            "phase": phase,
            "hostIP": self.k.host_ip,
            "hostIPs": [{"ip": self.k.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition(
                    "Initialized",
                    self.initialized,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(uninit)}]",
                ),
                self._condition(
                    "Ready", not unready and phase == "Running", done_reason, ready_msg
                ),
                self._condition(
                    "ContainersReady", not unready and phase == "Running", done_reason, ready_msg
                ),
                self._condition("PodScheduled", True),
            ],
            **({"initContainerStatuses": [c.status() for c in self.inits]} if self.inits else {}),
            "containerStatuses": [c.status() for c in self.mains],
        }

    async def push(self) -> None:
        """PUT the current status, at the resourceVersion last seen; on a conflict GET the pod
        and try again.

        Like a real kubelet's status patch, the body holds only the status (and the metadata
        that names the pod): the API server validates what it is sent, not the spec again.
        """
        if self.gone:
            return
        async with self.push_lock:
            path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
            meta = self.pod["metadata"]
            for _ in range(10):
                try:
                    if meta is None:
                        meta = (await self.k.api("GET", path))["metadata"]
                    if meta["uid"] != self.uid:
                        return
                    body = {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {key: meta[key] for key in POD_KEY_METADATA},
                        "status": self.status(),
                    }
                    self.pod = await self.k.api("PUT", path + "/status", body)
                    return
                except ApiStatusError as e:
                    if e.status == 404:
                        self.gone = True
                        return
                    if e.status != 409:
                        log.warning("status of %s/%s: %s", self.ns, self.name, e)
                        return
                except aiohttp.ClientError as e:
                    log.warning("status of %s/%s: %s", self.ns, self.name, e)
                    await asyncio.sleep(0.2)
                meta = None

    async def event(self, reason: str, message: str, type_: str = "Normal",
                    c: Container | None = None, component: str = "kubelet") -> None:  # fmt: skip
        involved: Obj = {
            "kind": "Pod", "apiVersion": "v1", "namespace": self.ns, "name": self.name,
            "uid": self.uid, "resourceVersion": self.pod["metadata"].get("resourceVersion", ""),
        }  # fmt: skip
        if c is not None:
            involved["fieldPath"] = c.field_path
        stamp = now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.name}.{uuid.uuid4().hex[:16]}", "namespace": self.ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": component, "host": self.k.node_name},
            "reportingComponent": component,
            "reportingInstance": self.k.node_name,
        }
        try:
            await self.k.api("POST", f"/api/v1/namespaces/{self.ns}/events", body)
        except (ApiStatusError, aiohttp.ClientError) as e:
            log.warning("event %s for %s/%s: %s", reason, self.ns, self.name, e)

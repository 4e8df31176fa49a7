"""The sandbox kubelet: runs the pods of a Kubernetes API server as real processes here.

It is an ordinary HTTP client of the API server, like a real kubelet: it lists and watches all
pods, runs each new one (volumes, init containers in order, then the containers, restarts with
back-off per restartPolicy), PUTs pods/NAME/status, POSTs events, and finishes a graceful
deletion (SIGTERM, SIGKILL after the grace period) with a DELETE with gracePeriodSeconds=0.
Each container runs through :mod:`nfsuidspawner.sandbox.runtime` in private namespaces with the
uid, gids and capabilities of its securityContext, enforced by the kernel.

Every pod gets its own 127.x.y.z address from a pool. There are no network namespaces, so a
Jupyter server asked to bind 0.0.0.0 binds the pod IP instead (see runtime.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import os
import posixpath
import shutil
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from nfsuidspawner.sandbox import runtime
from nfsuidspawner.sandbox.runtime import ContainerConfigError, Obj

__all__ = ["Kubelet", "KubeletError"]

log = logging.getLogger(__name__)

RUNTIME_SCRIPT = str(Path(runtime.__file__).resolve())
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80


class KubeletError(RuntimeError):
    """The kubelet cannot run here (e.g. not root)."""


class ApiStatusError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"API answered {status}: {body[:300]}")
        self.status = status


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Container:
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


class _Pod:
    """One pod's lifecycle, driven by its own asyncio task."""

    def __init__(self, kubelet: Kubelet, pod: Obj, ip: str):
        self.k = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.ip = ip
        self.dir = kubelet.state_dir / "pods" / self.uid
        self.logdir = kubelet.state_dir / "logs" / self.ns / self.name / self.uid
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.inits = [_Container(c, True) for c in spec.get("initContainers") or []]
        self.mains = [_Container(c, False) for c in spec.get("containers") or []]
        self.start_time = _now()
        self.initialized = not self.inits
        self.final_phase: str | None = None
        self.conditions: dict[str, tuple[str, str]] = {}
        self.volumes: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None
        self.deleting: asyncio.Task[None] | None = None
        self.push_lock = asyncio.Lock()
        self.gone = False

    # --- status ---

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
            self.conditions[type_] = (status, _now())
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
        uninit = [c.name for c in self.inits if "terminated" not in c.state
                  or c.state["terminated"].get("exitCode") != 0]  # fmt: skip
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
        """PUT the current status (GET first for the newest resourceVersion; retry conflicts)."""
        if self.gone:
            return
        async with self.push_lock:
            path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
            for _ in range(10):
                try:
                    pod = await self.k.api("GET", path)
                    if pod["metadata"]["uid"] != self.uid:
                        return
                    pod["status"] = self.status()
                    self.pod = await self.k.api("PUT", path + "/status", pod)
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

    async def event(self, reason: str, message: str, type_: str = "Normal",
                    c: _Container | None = None, component: str = "kubelet") -> None:  # fmt: skip
        involved: Obj = {
            "kind": "Pod", "apiVersion": "v1", "namespace": self.ns, "name": self.name,
            "uid": self.uid, "resourceVersion": self.pod["metadata"].get("resourceVersion", ""),
        }  # fmt: skip
        if c is not None:
            involved["fieldPath"] = c.field_path
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.name}.{uuid.uuid4().hex[:16]}", "namespace": self.ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": component, "host": self.k.node_name},
            "reportingComponent": component,
            "reportingInstance": self.k.node_name,
        }
        try:
            await self.k.api("POST", f"/api/v1/namespaces/{self.ns}/events", body)
        except (ApiStatusError, aiohttp.ClientError) as e:
            log.warning("event %s for %s/%s: %s", reason, self.ns, self.name, e)

    # --- lifecycle ---

    async def run(self) -> None:
        await self.event("Scheduled", f"Successfully assigned {self.ns}/{self.name} to "
                         f"{self.k.node_name}", component="default-scheduler")  # fmt: skip
        for c in self.inits[1:] + self.mains:
            c.state = {"waiting": {"reason": "PodInitializing"}}
        for c in self.inits[:1] or self.mains:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        await self.push()
        await self._prepare_volumes()
        for c in self.inits:
            if not await self._run_init(c):
                self.final_phase = "Failed"
                for m in self.mains:
                    m.state = {"waiting": {"reason": "PodInitializing"}}
                await self.push()
                return
        self.initialized = True
        for c in self.mains:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        await self.push()
        codes = await asyncio.gather(*(self._run_main(c) for c in self.mains))
        self.final_phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        await self.push()

    def _backoff(self, n: int) -> float:
        return min(self.k.backoff_initial * (2 ** max(n - 1, 0)), self.k.backoff_max)

    async def _run_init(self, c: _Container) -> bool:
        while True:
            code = await self._run_once(c)
            if code == 0:
                return True
            if self.restart_policy == "Never" and code is not None:
                return False
            await self._back_off(c, code)

    async def _run_main(self, c: _Container) -> int:
        while True:
            code = await self._run_once(c)
            if code is not None and (
                self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0)
            ):
                return code
            await self._back_off(c, code)

    async def _back_off(self, c: _Container, code: int | None) -> None:
        """Wait before retrying: a restart (code set) or a config error (code None)."""
        if code is None:
            await asyncio.sleep(self._backoff(1))
            return
        c.restart_count += 1
        delay = self._backoff(c.restart_count)
        c.last_state = c.state
        c.state = {"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {delay:g}s restarting failed container={c.name} "
                       f"pod={self.name}_{self.ns}({self.uid})",
        }}  # fmt: skip
        c.started = False
        await self.push()
        await self.event("BackOff", f"Back-off restarting failed container {c.name} in pod "
                         f"{self.name}_{self.ns}({self.uid})", "Warning", c)  # fmt: skip
        await asyncio.sleep(delay)

    async def _prepare_volumes(self) -> None:
        attempt = 0
        while True:
            try:
                self.volumes = await self.k._volumes(self)
                return
            except _MountError as e:
                attempt += 1
                await self.event("FailedMount", str(e), "Warning")
                await asyncio.sleep(self._backoff(attempt))

    async def _run_once(self, c: _Container) -> int | None:
        """Create and run the container once; its exit code, or None for a config error."""
        attempt = f"{c.name}-{c.restart_count}"
        cdir = self.dir / "containers" / attempt
        shutil.rmtree(cdir, ignore_errors=True)
        (cdir / "rootfs").mkdir(parents=True)
        tlog = cdir / "termination-log"
        tlog.touch()
        os.chmod(tlog, 0o666)
        start_error = cdir / "start-error"
        try:
            cfg = runtime.container_config(
                self.pod, c.spec, pod_ip=self.ip, volumes=self.volumes,
                rootfs=str(cdir / "rootfs"), termination_log=str(tlog),
                start_error_file=str(start_error),
            )  # fmt: skip
        except (ContainerConfigError, OSError) as e:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            await self.push()
            await self.event("Failed", f"Error: {e}", "Warning", c)
            return None
        cfg["parent_pid"] = os.getpid()
        (cdir / "config.json").write_text(json.dumps(cfg))
        image = c.spec.get("image", "")
        await self.event("Pulled", f'Container image "{image}" already present on machine', c=c)
        self.logdir.mkdir(parents=True, exist_ok=True)
        logfile = self.logdir / f"{c.name}.{c.restart_count}.log"
        with open(logfile, "wb") as out:
            c.proc = await asyncio.create_subprocess_exec(
                sys.executable, RUNTIME_SCRIPT, str(cdir / "config.json"),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.k._latest_logs[(self.ns, self.name)] = self.logdir
        c.container_id = f"sandbox://{uuid.uuid4().hex}"
        started_at = _now()
        await self.event("Created", f"Created container: {c.name}", c=c)
        c.init_pid = await _child_of(c.proc.pid)
        c.state = {"running": {"startedAt": started_at}}
        c.started = not c.init
        ports = [p["containerPort"] for p in c.spec.get("ports") or [] if p.get("containerPort")]
        c.ready = not c.init and not ports
        await self.push()
        await self.event("Started", f"Started container {c.name}", c=c)
        probe = asyncio.create_task(self._probe(c, ports[0])) if ports and not c.init else None
        try:
            code = await c.proc.wait()
        finally:
            if probe:
                probe.cancel()
        code = 128 - code if code < 0 else code
        c.ready = False
        c.started = False
        terminated: Obj = {"exitCode": code, "startedAt": started_at, "finishedAt": _now(),
                           "containerID": c.container_id}  # fmt: skip
        if start_error.exists() and start_error.stat().st_size:
            message = start_error.read_text()
            terminated.update(
                reason="StartError", message=message, exitCode=runtime.START_ERROR_EXIT
            )
            await self.event("Failed", f"Error: failed to start container {c.name!r}: {message}",
                             "Warning", c)  # fmt: skip
        else:
            terminated["reason"] = "Completed" if code == 0 else "Error"
            message = tlog.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
            if (not message and code != 0
                    and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"):  # fmt: skip
                message = _tail(logfile)
            if message:
                terminated["message"] = message
        c.state = {"terminated": terminated}
        await self.push()
        return terminated["exitCode"]

    async def _probe(self, c: _Container, port: int) -> None:
        """Ready while podIP:port accepts TCP connections."""
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.ip, port), 1)
                writer.close()
                ok = True
            except (TimeoutError, OSError):
                ok = False
            if ok != c.ready:
                c.ready = ok
                await self.push()
            await asyncio.sleep(1.0 if ok else self.k.probe_interval)

    # --- stopping ---

    def containers(self) -> list[_Container]:
        return self.inits + self.mains

    async def kill(self, grace: float, events: bool) -> None:
        """SIGTERM every running container, SIGKILL after `grace` seconds, wait until gone."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        running = [c for c in self.containers() if c.proc and c.proc.returncode is None]
        for c in running:
            if events:
                await self.event("Killing", f"Stopping container {c.name}", c=c)
            _signal(c.proc.pid, signal.SIGTERM)
        waits = [asyncio.create_task(c.proc.wait()) for c in running]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            if pending:
                for c in running:
                    if c.proc.returncode is None:
                        _signal(c.proc.pid, signal.SIGKILL)
                        if c.init_pid:
                            _signal(c.init_pid, signal.SIGKILL)
                await asyncio.wait(waits)
        for c in running:
            code = c.proc.returncode
            code = 128 - code if code < 0 else code
            start = c.state.get("running", {}).get("startedAt", _now())
            c.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": start, "finishedAt": _now(),
                                      "containerID": c.container_id}}  # fmt: skip
            c.ready = c.started = False
            if c.init_pid:
                await _wait_gone(c.init_pid)

    async def delete(self) -> None:
        """Graceful deletion requested: stop everything, report, and remove the pod object."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self.kill(float(grace), events=True)
        await self.push()
        try:
            await self.k.api("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                             {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                              "preconditions": {"uid": self.uid}},
                             params={"gracePeriodSeconds": "0"})  # fmt: skip
        except ApiStatusError as e:
            if e.status != 404:
                log.warning("final delete of %s/%s: %s", self.ns, self.name, e)
        self.k._forget(self)

    def cleanup(self) -> None:
        """Remove the pod's private directories (emptyDirs, container roots). Never the exports."""
        shutil.rmtree(self.dir, ignore_errors=True)


class _MountError(Exception):
    pass


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def _child_of(pid: int) -> int | None:
    """The host PID of the shim's child (the container's init), for a last-resort SIGKILL."""
    for _ in range(50):
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if text:
            return int(text[0])
        await asyncio.sleep(0.01)
    return None


def _alive(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line
    except OSError:
        return False
    return False


async def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if not _alive(pid):
            return
        await asyncio.sleep(0.02)
    _signal(pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    data = path.read_bytes()[-FALLBACK_LOG_BYTES:]
    lines = data.decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines)


def _container_ports(pod: Obj) -> list[int]:
    return [
        port["containerPort"]
        for c in pod["spec"].get("containers", [])
        for port in c.get("ports") or []
    ]


def _can_bind(addr: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((addr, port))
        except OSError:
            return False
    return True


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
        pod_cidr: str = "127.0.90.0/24",
        *,
        node_name: str = "sandbox-node",
        host_ip: str = "127.0.0.1",
        backoff_initial: float = 1.0,
        backoff_max: float = 10.0,
        probe_interval: float = 0.2,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.state_dir = Path(state_dir)
        self.exports = dict(exports)
        self.network = ipaddress.ip_network(pod_cidr)
        if not self.network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"pod_cidr must be inside 127.0.0.0/8, not {pod_cidr}")
        self.node_name = node_name
        self.host_ip = host_ip
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.probe_interval = probe_interval
        self._pods: dict[str, _Pod] = {}
        self._ips: set[str] = set()
        self._latest_logs: dict[tuple[str, str], Path] = {}
        self._session: aiohttp.ClientSession | None = None
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
        if not hasattr(os, "O_PATH") or os.uname().machine not in runtime.SYS_PIVOT_ROOT:
            raise KubeletError(f"unsupported platform for the sandbox runtime: {os.uname()}")
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        rv = await self._relist()
        self._watch_task = asyncio.create_task(self._watch(rv))

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
        self._ips.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()
            self._session = None

    def logs(self, namespace: str, pod: str, container: str, previous: bool = False) -> str:
        """A container's stdout+stderr (current run, or the one before with previous=True)."""
        logdir = self._latest_logs.get((namespace, pod))
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
        assert self._session is not None
        async with self._session.request(method, self.api_url + path, json=body,
                                         params=params) as resp:  # fmt: skip
            text = await resp.text()
            if resp.status >= 300:
                raise ApiStatusError(resp.status, text)
            return json.loads(text)

    async def _relist(self) -> str:
        result = await self.api("GET", "/api/v1/pods")
        seen = set()
        for pod in result["items"]:
            seen.add(pod["metadata"]["uid"])
            self._handle("MODIFIED", pod)
        for uid in [u for u in self._pods if u not in seen]:
            self._handle("DELETED", self._pods[uid].pod)
        return result["metadata"]["resourceVersion"]

    async def _watch(self, rv: str) -> None:
        assert self._session is not None
        while True:
            try:
                params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "60"}
                async with self._session.get(self.api_url + "/api/v1/pods", params=params) as resp:
                    if resp.status != 200:
                        raise ApiStatusError(resp.status, await resp.text())
                    buf = b""
                    expired = False
                    while not expired:
                        chunk = await resp.content.readany()
                        if not chunk:
                            break
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if not line.strip():
                                continue
                            ev = json.loads(line)
                            if ev["type"] == "ERROR":
                                expired = True
                                break
                            rv = ev["object"]["metadata"]["resourceVersion"]
                            self._handle(ev["type"], ev["object"])
                    if expired:
                        rv = await self._relist()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, ApiStatusError, ValueError) as e:
                log.warning("pod watch: %s; relisting", e)
                await asyncio.sleep(0.5)
                try:
                    rv = await self._relist()
                except (aiohttp.ClientError, ApiStatusError) as e2:
                    log.warning("pod relist: %s", e2)

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
        ip = self._allocate_ip(_container_ports(pod))
        p = _Pod(self, pod, ip)
        self._pods[uid] = p
        p.task = self._spawn(p.run())

    async def _final_delete(self, path: str) -> None:
        try:
            await self.api("DELETE", path, params={"gracePeriodSeconds": "0"})
        except ApiStatusError as e:
            if e.status != 404:
                raise

    async def _vanished(self, p: _Pod) -> None:
        """The pod object is gone (force deletion): kill at once, no API calls."""
        await p.kill(0.0, events=False)
        self._forget(p)

    def _forget(self, p: _Pod) -> None:
        if self._pods.get(p.uid) is p:
            del self._pods[p.uid]
            self._ips.discard(p.ip)
            p.cleanup()

    def _allocate_ip(self, ports: list[int]) -> str:
        """The next free address, skipping any where another process holds a pod's port.

        Without network namespaces, another sandbox on this machine could hold the same
        address; a lab there would otherwise answer for this pod.
        """
        hosts = self.network.hosts()
        next(hosts, None)  # the gateway
        for addr in map(str, hosts):
            if addr not in self._ips and all(_can_bind(addr, port) for port in ports):
                self._ips.add(addr)
                return addr
        raise KubeletError(f"pod address pool {self.network} is exhausted")

    # --- volumes ---

    def _export_dir(self, server: str, path: str) -> str:
        norm = posixpath.normpath("/" + path.lstrip("/"))
        if ".." in path.split("/"):
            raise _MountError(f"mount.nfs: invalid path {server}:{path}")
        best: tuple[int, str] | None = None
        best_key = ""
        for key, local in self.exports.items():
            kserver, _, kpath = key.partition(":")
            kpath = posixpath.normpath(kpath or "/")
            if kserver != server:
                continue
            if norm == kpath or norm.startswith(kpath.rstrip("/") + "/"):
                rest = norm[len(kpath) :].lstrip("/")
                if best is None or len(kpath) > best[0]:
                    best = (len(kpath), os.path.join(local, rest) if rest else local)
                    best_key = key
        if best is None:
            raise _MountError(f"mount.nfs: access denied by server while mounting {server}:{path}")
        export_root = os.path.realpath(self.exports[best_key])
        local = os.path.realpath(best[1])
        if local != export_root and not local.startswith(export_root + "/"):
            raise _MountError(f"mount.nfs: {server}:{path} leaves the export")
        if not os.path.isdir(local):
            raise _MountError(f"mount.nfs: mounting {server}:{path} failed, reason given by "
                              "server: No such file or directory")  # fmt: skip
        return best[1]

    async def _volumes(self, p: _Pod) -> dict[str, str]:
        out: dict[str, str] = {}
        for v in p.pod["spec"].get("volumes") or []:
            name = v["name"]
            try:
                if "emptyDir" in v:
                    d = p.dir / "volumes" / name
                    d.mkdir(parents=True, exist_ok=True)
                    os.chmod(d, 0o777)
                    out[name] = str(d)
                elif "nfs" in v:
                    out[name] = self._export_dir(v["nfs"]["server"], v["nfs"]["path"])
                elif "persistentVolumeClaim" in v:
                    out[name] = await self._pvc_dir(p.ns, v["persistentVolumeClaim"]["claimName"])
                elif "configMap" in v or "secret" in v:
                    out[name] = await self._keys_dir(p, v)
            except _MountError as e:
                raise _MountError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
        return out

    async def _pvc_dir(self, ns: str, claim: str) -> str:
        try:
            pvc = await self.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        except ApiStatusError as e:
            raise _MountError(f'persistentvolumeclaim "{claim}" not found ({e.status})') from None
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            pvs = await self.api("GET", "/api/v1/persistentvolumes")
            for pv in pvs["items"]:
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("namespace") == ns and ref.get("name") == claim:
                    pv_name = pv["metadata"]["name"]
        if not pv_name:
            raise _MountError(f'persistentvolumeclaim "{claim}" is not bound')
        try:
            pv = await self.api("GET", f"/api/v1/persistentvolumes/{pv_name}")
        except ApiStatusError as e:
            raise _MountError(f'persistentvolume "{pv_name}" not found ({e.status})') from None
        nfs = (pv.get("spec") or {}).get("nfs")
        if not nfs:
            raise _MountError(f'persistentvolume "{pv_name}" has no spec.nfs (sandbox: NFS only)')
        return self._export_dir(nfs["server"], nfs["path"])

    async def _keys_dir(self, p: _Pod, v: Obj) -> str:
        kind = "configMap" if "configMap" in v else "secret"
        src = v[kind]
        name = src.get("name") if kind == "configMap" else src.get("secretName")
        plural = "configmaps" if kind == "configMap" else "secrets"
        try:
            obj = await self.api("GET", f"/api/v1/namespaces/{p.ns}/{plural}/{name}")
        except ApiStatusError as e:
            if src.get("optional"):
                obj = {}
            else:
                raise _MountError(f'{kind.lower()} "{name}" not found ({e.status})') from None
        d = p.dir / "volumes" / v["name"]
        d.mkdir(parents=True, exist_ok=True)
        mode = src.get("defaultMode", 0o644)
        for key, value in (obj.get("data") or {}).items():
            data = base64.b64decode(value) if kind == "secret" else value.encode()
            (d / key).write_bytes(data)
            os.chmod(d / key, mode)
        return str(d)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sandbox kubelet task failed", exc_info=task.exception())

"""One pod's lifecycle on the sandbox kubelet, driven by its own asyncio task.

:class:`Pod` prepares the pod's volumes (:mod:`.volumes`), runs its init containers in order and
then its containers, each through the shim (:mod:`.shim`, run as a script on the config from
:mod:`.runtime`), restarts them with back-off per restartPolicy, probes the ports of a
container for readiness, and stops them: SIGTERM, then SIGKILL after the grace period, then the
final DELETE with gracePeriodSeconds=0. What it reports on the way is :class:`.podstatus.PodReport`,
as often as a kubelet does: an init container that ends before the next relist of containers
is never reported running, and its end and the pod's initialization are one status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import runtime, shim
from .kubeclient import ApiStatusError
from .podstatus import Container, PodReport, now
from .runtime import ContainerConfigError, Obj
from .volumes import MountError

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

RUNTIME_SCRIPT = str(Path(shim.__file__).resolve())
# No PYTHON* variables, user site or site packages: the shim is stdlib only, and starts faster.
SHIM_FLAGS = ("-E", "-s", "-S")
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80


class Pod(PodReport):
    """One pod's lifecycle, driven by its own asyncio task."""

    def __init__(self, kubelet: Kubelet, pod: Obj, ip: str):
        super().__init__(kubelet, pod, ip)
        self.dir = kubelet.state_dir / "pods" / self.uid
        self.logdir = kubelet.state_dir / "logs" / self.ns / self.name / self.uid
        self.restart_policy = pod["spec"].get("restartPolicy", "Always")
        self.volumes: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None
        self.deleting: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def run(self) -> None:
        await self.event("Scheduled", f"Successfully assigned {self.ns}/{self.name} to "
                         f"{self.k.node_name}", component="default-scheduler")  # fmt: skip
        # A kubelet's default reason for a container not made yet: PodInitializing in a pod
        # with init containers (for those too), else ContainerCreating.
        if not self.inits:
            for c in self.mains:
                c.state = {"waiting": {"reason": "ContainerCreating"}}
        await self.push()
        await self._prepare_volumes()
        for c in self.inits:
            if not await self._run_init(c):  # the containers stay waiting in PodInitializing
                self.final_phase = "Failed"
                await self.push()
                return
        codes = await asyncio.gather(*(self._run_main(c) for c in self.mains))
        self.final_phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        await self.push()

    def _backoff(self, n: int) -> float:
        return min(self.k.backoff_initial * (2 ** max(n - 1, 0)), self.k.backoff_max)

    async def _run_init(self, c: Container) -> bool:
        while True:
            code = await self._run_once(c)
            if code == 0:
                return True
            if self.restart_policy == "Never" and code is not None:
                return False
            await self._back_off(c, code)

    async def _run_main(self, c: Container) -> int:
        while True:
            code = await self._run_once(c)
            if code is not None and (
                self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0)
            ):
                return code
            await self._back_off(c, code)

    async def _back_off(self, c: Container, code: int | None) -> None:
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
                self.volumes = await self.k.volumes.setup(self.pod, self.ns, self.dir)
                return
            except MountError as e:
                attempt += 1
                await self.event("FailedMount", str(e), "Warning")
                await asyncio.sleep(self._backoff(attempt))

    async def _run_once(self, c: Container) -> int | None:
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
        (cdir / "config.marshal").write_bytes(marshal.dumps(cfg))
        image = c.spec.get("image", "")
        await self.event("Pulled", f'Container image "{image}" already present on machine', c=c)
        self.logdir.mkdir(parents=True, exist_ok=True)
        logfile = self.logdir / f"{c.name}.{c.restart_count}.log"
        with open(logfile, "wb") as out:
            c.proc = await asyncio.create_subprocess_exec(
                sys.executable, *SHIM_FLAGS, RUNTIME_SCRIPT, str(cdir / "config.marshal"),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.k.latest_logs[(self.ns, self.name)] = self.logdir
        c.container_id = f"sandbox://{uuid.uuid4().hex}"
        started_at = now()
        await self.event("Created", f"Created container: {c.name}", c=c)
        c.init_pid = await _child_of(c.proc.pid)
        c.state = {"running": {"startedAt": started_at}}
        c.started = not c.init
        ports = [p["containerPort"] for p in c.spec.get("ports") or [] if p.get("containerPort")]
        c.ready = not c.init and not ports
        exited = asyncio.ensure_future(c.proc.wait())
        # The kubelet records the Started event at once, but sees the container run only at
        # its next relist of the runtime's containers (the generic PLEG, each second): an init
        # container that ends sooner is only ever reported terminated. A lab's start is
        # reported at once, a little early.
        await self.event("Started", f"Started container {c.name}", c=c)
        if not c.init or not await _ends_within(exited, self.k.relist_period):
            await self.push()
        probe = asyncio.create_task(self._probe(c, ports[0])) if ports and not c.init else None
        try:
            code = await exited
        finally:
            if probe:
                probe.cancel()
        code = 128 - code if code < 0 else code
        c.ready = False
        c.started = False
        terminated: Obj = {"exitCode": code, "startedAt": started_at, "finishedAt": now(),
                           "containerID": c.container_id}  # fmt: skip
        if start_error.exists() and start_error.stat().st_size:
            message = start_error.read_text()
            terminated.update(reason="StartError", message=message, exitCode=shim.START_ERROR_EXIT)
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
        if c.init and all(i.succeeded for i in self.inits):
            # The kubelet's next sync reports it and starts the containers; until they run,
            # they are waiting in PodInitializing, as they have been since the pod began.
            self.initialized = True
        await self.push()
        return terminated["exitCode"]

    async def _probe(self, c: Container, port: int) -> None:
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

    def containers(self) -> list[Container]:
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
            start = c.state.get("running", {}).get("startedAt", now())
            c.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": start, "finishedAt": now(),
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
        self.k.forget(self)

    def cleanup(self) -> None:
        """Remove the pod's private directories (emptyDirs, container roots). Never the exports."""
        shutil.rmtree(self.dir, ignore_errors=True)


async def _ends_within(exited: asyncio.Future, seconds: float) -> bool:
    """Whether `exited` is done within `seconds` (it goes on either way)."""
    await asyncio.wait([exited], timeout=seconds)
    return exited.done()


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

"""End-to-end fixtures: the sandbox cluster, a real JupyterHub with its proxy, and lab access.

The sandbox runs as a child process for the whole session (its kubelet's pods die
with it); each test module starts the hubs it needs. When a wait fails, the error
carries the hub's log, the pod's events and its container logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nfsuidspawner.sandbox.hub import HubProcess, HubSettings, free_port

from ..conftest import make_homes

REPO = Path(__file__).parent.parent.parent
PV_PVC = REPO / "helm-values" / "manifests" / "nfs-pv-pvc.yaml"
NFS_EXPORT = "aixsky.msxf.local:/hpc"
NAMESPACE = "jupyter-system"

# The test share: directory name -> (uid, gid). "ghost" has no directory.
OWNERS = {
    "alice": (2001, 3001),
    "bob": (2002, 3002),
    "qiang.guo03": (2003, 3003),
    "rooted": (0, 0),
}
PROJECT_GID = 5001
# An alias left after a rename, as HPC sites keep them: home/asmith -> bob.
ALIASES = {"asmith": "bob"}
USERS = [*OWNERS, *ALIASES, "ghost", "admin"]


def _missing_precondition() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the sandbox kubelet enforces uids, capabilities and mounts"
    if shutil.which("configurable-http-proxy") is None:
        return "needs configurable-http-proxy on PATH (./run test installs it from npm)"
    return None


@pytest.fixture(scope="session")
def e2e_precondition() -> None:
    reason = _missing_precondition()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def share(tmp_path_factory: pytest.TempPathFactory, e2e_precondition: None) -> Path:
    """The directory standing in for the NFS export aixsky.msxf.local:/hpc."""
    root = tmp_path_factory.mktemp("e2e")
    root.chmod(0o755)
    export = root / "exports" / "hpc"
    make_homes(export / "home", OWNERS)
    for alias, target in ALIASES.items():
        (export / "home" / alias).symlink_to(target)
    (export / "datasets").mkdir()
    (export / "datasets" / "shared.csv").write_text("a,b\n1,2\n")
    # A project directory of group p1, as HPC sites share data: setgid, group-only.
    project = export / "projects" / "p1"
    project.mkdir(parents=True)
    os.chown(project, 0, PROJECT_GID)
    project.chmod(0o2770)
    return export


@dataclass
class SandboxInfo:
    url: str
    kubeconfig: str
    admin_token: str
    state_dir: Path

    async def pods(self) -> list[dict[str, Any]]:
        return (await self._get(f"/api/v1/namespaces/{NAMESPACE}/pods"))["items"]

    async def events(self, pod: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name%3D{pod}"
        return (await self._get(path))["items"]

    async def _get(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(self.url + path) as response:
                response.raise_for_status()
                return await response.json()

    def container_logs(self, pod: str) -> str:
        logs = sorted((self.state_dir / "kubelet" / "logs" / NAMESPACE / pod).glob("*/*.log"))
        return "\n".join(
            f"--- {p.parent.name}/{p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
        )

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request as the sandbox admin; (status, JSON body)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.request(method, self.url + path, **kwargs) as response:
                return response.status, await response.json()

    async def set_faults(self, *rules: dict[str, Any]) -> None:
        """Replace the API server's fault rules (nfsuidspawner/sandbox/faults.py)."""
        status, body = await self.admin("POST", "/sandbox/faults", json={"rules": list(rules)})
        assert status == 200, body

    async def faults(self) -> dict[str, Any]:
        """The fault rules with how often each matched and fired, and the restarts so far."""
        status, body = await self.admin("GET", "/sandbox/faults")
        assert status == 200, body
        return body

    async def clear_faults(self) -> dict[str, Any]:
        """Remove every fault rule; what they were, with their counts."""
        state = await self.faults()
        status, body = await self.admin("DELETE", "/sandbox/faults")
        assert status == 200, body
        return state

    async def break_watches(self, identity: str = "hub") -> int:
        """Cut the open watches of `identity` mid-stream; how many there were."""
        status, body = await self.admin(
            "POST", "/sandbox/watches/break", json={"identity": identity}
        )
        assert status == 200, body
        return body["broken"]

    async def restart_apiserver(self, down_seconds: float = 1.0, timeout: float = 30) -> None:
        """Restart the API server on its port (objects kept) and wait until it answers again."""
        before = (await self.faults())["restarts"]
        status, body = await self.admin(
            "POST", "/sandbox/restart", json={"down_seconds": down_seconds}
        )
        assert status == 202, body
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with contextlib.suppress(aiohttp.ClientError):
                if (await self.faults())["restarts"] > before:
                    return
        raise AssertionError(f"the sandbox API server did not come back within {timeout} s")

    async def delete_pod(self, name: str, grace_seconds: int = 1) -> None:
        """Delete a pod as an eviction or an admin would (graceful; the kubelet finishes it)."""
        path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}?gracePeriodSeconds={grace_seconds}"
        status, body = await self.admin("DELETE", path)
        assert status == 200, body


@contextlib.contextmanager
def sandbox_process(share: Path, state: Path) -> Iterator[SandboxInfo]:
    """A sandbox child process of its own serving `share` as the NFS export, and the PV/PVC.

    For tests that would disturb the session's sandbox (faults, restarts, many users).
    """
    pod_cidr = f"127.{random.randrange(100, 250)}.{random.randrange(256)}.0/24"
    with open(state / "sandbox.log", "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "nfsuidspawner.cli", "sandbox", "--state-dir", str(state)),
                *("--export", f"{NFS_EXPORT}={share}", "--namespace", NAMESPACE),
                *("--apply", str(PV_PVC), "--pod-cidr", pod_cidr),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            pytest.fail(f"the sandbox did not start:\n{(state / 'sandbox.log').read_text()}")
        info = json.loads(line)
        yield SandboxInfo(info["url"], info["kubeconfig"], info["admin_token"], state)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def sandbox(share: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInfo]:
    # A subnet of its own, so that another sandbox (a demo) cannot hold the same pod IPs.
    with sandbox_process(share, tmp_path_factory.mktemp("sandbox")) as info:
        yield info


class Hub:
    """A running hub, driven through its REST API with an admin service token."""

    def __init__(self, process: HubProcess, sandbox: SandboxInfo) -> None:
        self.process = process
        self.sandbox = sandbox
        self.settings = process.settings
        self.url = self.settings.url

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.settings.api_token}"}

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self._headers()) as session:
            async with session.request(method, f"{self.url}/hub/api{path}", **kwargs) as r:
                body = await r.text()
                return r.status, (json.loads(body) if body.strip().startswith(("{", "[")) else body)

    async def user(self, name: str) -> dict[str, Any]:
        status, model = await self.api("GET", f"/users/{name}")
        assert status == 200, model
        return model

    async def request_start(self, user: str, server: str = "", **options: Any) -> int:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        status, _ = await self.api("POST", path, json=options)
        return status

    async def start(self, user: str, server: str = "", timeout: float = 90, **options: Any):
        status = await self.request_start(user, server, **options)
        assert status in (201, 202), f"starting {user}/{server}: HTTP {status}"
        return await self.wait_ready(user, server, timeout)

    async def wait_ready(self, user: str, server: str = "", timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = (await self.user(user))["servers"].get(server)
            if model and model["ready"]:
                return model
            if model is None and time.monotonic() > deadline - timeout + 5:
                break  # the spawn ended without a server: it failed
            await asyncio.sleep(0.5)
        raise AssertionError(f"{user}/{server} is not ready\n" + await self.diagnose(user))

    async def progress(self, user: str, server: str = "") -> list[dict[str, Any]]:
        """The spawn's progress events, as the spawn page reads them (to the end)."""
        path = (
            f"/users/{user}/servers/{server}/progress"
            if server
            else f"/users/{user}/server/progress"
        )
        events = []
        async with aiohttp.ClientSession(headers=self._headers()) as session:
            async with session.get(f"{self.url}/hub/api{path}") as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        events.append(json.loads(line[5:]))
        return events

    async def stop(self, user: str, server: str = "", timeout: float = 60) -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        status, body = await self.api("DELETE", path)
        assert status in (202, 204, 400), f"stopping {user}/{server}: {status} {body}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server not in (await self.user(user))["servers"]:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{user}/{server} did not stop\n" + await self.diagnose(user))

    async def stop_all(self) -> None:
        status, users = await self.api("GET", "/users")
        for model in users if status == 200 else []:
            for server in model.get("servers", {}):
                await self.stop(model["name"], server)

    async def pods_of(self, user: str) -> list[dict[str, Any]]:
        return [
            p
            for p in await self.sandbox.pods()
            if p["metadata"]["annotations"].get("hub.jupyter.org/username") == user
        ]

    async def pods_left(self, user: str, timeout: float = 20) -> list[str]:
        """The names of the user's pods still in the sandbox after waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            names = [p["metadata"]["name"] for p in await self.pods_of(user)]
            if not names or time.monotonic() > deadline:
                return names
            await asyncio.sleep(0.5)

    async def servers(self) -> dict[str, dict[str, Any]]:
        """Every user's servers as the hub lists them (one request): user -> name -> model."""
        status, users = await self.api("GET", "/users")
        assert status == 200, users
        return {model["name"]: model.get("servers") or {} for model in users}

    async def pods_without_server(self) -> dict[str, list[str]]:
        """The sandbox's lab pods whose user has no server, pending or running, in this hub."""
        servers = await self.servers()
        orphans: dict[str, list[str]] = {}
        for pod in await self.sandbox.pods():
            annotations = pod["metadata"].get("annotations") or {}
            user = annotations.get("hub.jupyter.org/username")
            server = annotations.get("hub.jupyter.org/servername", "")
            if user in servers and server not in servers[user]:
                orphans.setdefault(user, []).append(pod["metadata"]["name"])
        return orphans

    def spawner_state(self, user: str, server: str = "") -> dict[str, Any]:
        """A server's spawner state as the hub stored it in its database ({} if none)."""
        db = Path(self.settings.state_dir) / "jupyterhub.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            row = connection.execute(
                "SELECT spawners.state FROM spawners JOIN users ON spawners.user_id = users.id"
                " WHERE users.name = ? AND spawners.name = ?",
                (user, server),
            ).fetchone()
        return json.loads(row[0] or "{}") if row else {}

    async def diagnose(self, user: str) -> str:
        parts = [f"=== hub log (tail)\n{self.process.log()}"]
        for pod in await self.pods_of(user):
            name = pod["metadata"]["name"]
            events = [
                f"{e.get('reason')}: {e.get('message')}" for e in await self.sandbox.events(name)
            ]
            parts += [
                f"=== pod {name} status\n{json.dumps(pod.get('status'), indent=1)[:3000]}",
                "=== events\n" + "\n".join(events),
                f"=== container logs\n{self.sandbox.container_logs(name)}",
            ]
        return "\n".join(parts)

    async def lab_session(self, user: str, server: str = "") -> aiohttp.ClientSession:
        """A session that reaches the user's lab through the proxy, with the admin token."""
        return aiohttp.ClientSession(base_url=self.lab_url(user, server), headers=self._headers())

    def lab_url(self, user: str, server: str = "") -> str:
        return f"{self.url}/user/{user}/{server + '/' if server else ''}"

    async def run_in_lab(self, user: str, code: str, server: str = "", timeout: float = 60) -> str:
        """Run Python in a new kernel of the user's lab; return what it printed."""
        async with await self.lab_session(user, server) as lab:
            async with lab.post("api/kernels", json={"name": "python3"}) as r:
                assert r.status == 201, await r.text()
                kernel = (await r.json())["id"]
            try:
                return await asyncio.wait_for(self._execute(lab, kernel, code), timeout)
            finally:
                async with lab.delete(f"api/kernels/{kernel}"):
                    pass

    @staticmethod
    async def _execute(lab: aiohttp.ClientSession, kernel: str, code: str) -> str:
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "username": "e2e",
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
            },
        }
        output = []
        async with lab.ws_connect(f"api/kernels/{kernel}/channels") as ws:
            await ws.send_json(request)
            async for message in ws:
                msg = json.loads(message.data)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    output.append(msg["content"]["text"])
                elif kind == "error":
                    raise AssertionError("\n".join(msg["content"]["traceback"]))
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
        return "".join(output)


@contextlib.contextmanager
def running_hub(
    sandbox: SandboxInfo,
    state_dir: Path,
    spawner: dict[str, Any] | None = None,
    extra_config: list[str] | tuple[str, ...] = (),
    users: list[str] | None = None,
) -> Iterator[Hub]:
    """A hub on free ports with these spawner settings; at the end its labs stop, then it."""
    settings = HubSettings(
        state_dir=str(state_dir),
        kubeconfig=sandbox.kubeconfig,
        namespace=NAMESPACE,
        users=users or USERS,
        port=free_port(),
        spawner=spawner or {},
        extra_config=list(extra_config),
    )
    process = HubProcess(settings)
    process.start()
    hub = Hub(process, sandbox)
    try:
        yield hub
    finally:
        if process.process is not None:
            asyncio.run(hub.stop_all())
        process.stop()


def source_settings(source: str, share: Path) -> dict[str, Any]:
    """Spawner settings for an identity source; the hub's "mount" of the share is the export."""
    if source == "hub":
        return {"identity_source": "hub", "hub_share_path": str(share)}
    return {"identity_source": source}


@pytest.fixture(scope="module", params=["initcontainer", "hub"])
def hub(request, sandbox, share, tmp_path_factory) -> Iterator[Hub]:
    """A hub for each identity source, in turn; modules that need another hub define their own."""
    with running_hub(
        sandbox, tmp_path_factory.mktemp("hub"), spawner=source_settings(request.param, share)
    ) as hub:
        yield hub

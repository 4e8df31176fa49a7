"""What the load benchmark runs beside the hub and reads off this machine: the sandbox cluster
as a child process, and /proc (CPU time, peak RSS, processes and mounts left).

A helper of bench_load.py; see its docstring for what is measured and how.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "jupyter-system"
NFS_SERVER, NFS_PATH = "bench.nfs.local", "/hpc"
TICK = os.sysconf("SC_CLK_TCK")


# --- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of one process (all its threads), or of its children that have ended
    (cutime + cstime: what they and theirs used)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / TICK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (the sandbox's containers: shims, inits, labs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def mounts_under(root: Path) -> list[str]:
    """Mount points below `root` in this mount namespace (the sandbox's, too)."""
    prefix = str(root) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(prefix)]


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def end_with_parent() -> None:
    # In the child before exec: SIGTERM it if this benchmark dies, even by SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


# --- the sandbox, as a child process ------------------------------------------------------


class SandboxProcess:
    """`python -m nfsuidspawner.cli sandbox` with the share as its one export."""

    def __init__(self, state_dir: Path, export: Path) -> None:
        self.state_dir = state_dir
        self.export = export
        self.log_path = state_dir.parent / "sandbox.log"
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, str] = {}

    def launch(self) -> None:
        """Start the child. From the main thread: its death signal follows the forking thread."""
        # A /16 of its own: room for the burst, clear of the tests' /24s and the kubelet's default.
        cidr = f"127.{random.randrange(20, 90)}.0.0/16"
        export = f"{NFS_SERVER}:{NFS_PATH}={self.export}"
        argv = [sys.executable, "-m", "nfsuidspawner.cli", "sandbox", "--namespace", NAMESPACE]
        argv += ["--state-dir", str(self.state_dir), "--export", export, "--pod-cidr", cidr]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
                preexec_fn=end_with_parent,
                cwd=REPO,
            )

    async def start(self) -> None:
        self.launch()
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60)
        if not line:
            raise RuntimeError(f"the sandbox did not start:\n{self.log()}")
        self.info = json.loads(line)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _list_pods(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.info['admin_token']}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            url = f"{self.info['url']}/api/v1/namespaces/{NAMESPACE}/pods"
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.json()

    async def pods(self) -> list[str]:
        return [pod["metadata"]["name"] for pod in (await self._list_pods())["items"]]

    async def writes(self) -> int:
        """Writes so far: each pod create, status update, event and delete takes the next
        resourceVersion, and each reaches the hub's pod and event watches."""
        return int((await self._list_pods())["metadata"]["resourceVersion"])

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""


def remove_tree(root: Path) -> None:
    """Unmount what is left below `root` (never delete through a mount), then remove it."""
    for point in sorted(mounts_under(root), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(root, ignore_errors=True)

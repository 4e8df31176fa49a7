"""A real JupyterHub (and its configurable-http-proxy) in front of the sandbox cluster."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyterhub import __version__ as HUB_VERSION

CONFIG = Path(__file__).with_name("jupyterhub_config.py")
PR_SET_PDEATHSIG = 1
DEFAULT_IMAGE = "quay.io/jupyter/base-notebook:2025-12-31"


def tiny_lab_command(slow_users: tuple[str, ...] = (), startup: float = 0) -> list[str]:
    """A lab that costs next to nothing: an HTTP server answering 200 at the address the hub
    looks for, with the version header a real single-user server sends (without it the hub
    logs a warning per spawn). The sandbox puts the pod's IP in JUPYTERHUB_SERVICE_URL in place
    of KubeSpawner's 0.0.0.0. The labs of `slow_users` wait `startup` s before they listen, as
    a real lab takes seconds to start."""
    source = f"""
import http.server, os, time, urllib.parse
where = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
time.sleep({startup} if os.environ["JUPYTERHUB_USER"] in {list(slow_users)!r} else 0)
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", "{HUB_VERSION}")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((where.hostname, where.port), Answer).serve_forever()
"""
    return ["python3", "-c", source]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _end_with_parent() -> None:
    # Runs in the child before exec: if whoever started the hub dies, even by
    # SIGKILL, the hub is told to stop too (it is in a session of its own).
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class HubSettings:
    """What nfsuidspawner/sandbox/jupyterhub_config.py reads."""

    state_dir: str
    kubeconfig: str
    namespace: str
    users: list[str]
    admin_users: list[str] = field(default_factory=lambda: ["admin"])
    password: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    api_token: str = field(default_factory=lambda: secrets.token_hex(16))
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    image: str = DEFAULT_IMAGE
    spawner: dict[str, Any] = field(default_factory=dict)
    extra_config: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


class HubProcess:
    """`jupyterhub` as a child process. Stopping it ends it and its proxy, not the labs."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.state_dir = Path(settings.state_dir)
        self.log_path = self.state_dir / "jupyterhub.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Launch the hub and wait until it is healthy; on failure, stop what was started."""
        self.launch()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Start the hub process. Call it from a thread that lives as long as the hub should:
        the hub ends when the thread that started it does."""
        if shutil.which("configurable-http-proxy") is None:
            raise RuntimeError(
                "configurable-http-proxy is not on PATH: install it with"
                " `npm install configurable-http-proxy` (./run does)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.state_dir / "hub-settings.json"
        settings_file.write_text(json.dumps(asdict(self.settings)))
        env = dict(
            os.environ, KUBECONFIG=self.settings.kubeconfig, NFSUID_SANDBOX_HUB=str(settings_file)
        )
        jupyterhub = Path(sys.executable).with_name("jupyterhub")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(jupyterhub), "-f", str(CONFIG)],
                cwd=self.state_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_end_with_parent,
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.settings.url}/hub/health"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyterhub exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"jupyterhub was not healthy at {url} within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the hub (it stops its proxy), and SIGKILL its session if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._stop_orphaned_proxy()

    def _stop_orphaned_proxy(self) -> None:
        """End the proxy this hub started, if the hub could not (it was killed)."""
        pid_file = self.state_dir / "proxy.pid"
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        finally:
            pid_file.unlink(missing_ok=True)
        # The proxy runs in a session of its own: know it by this hub's own proxy API port.
        mine = b"--api-port" in cmdline and str(self.settings.proxy_api_port).encode() in cmdline
        if mine and any(b"configurable-http-proxy" in arg for arg in cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

"""HubProcess, which the demo and these tests use, leaves no hub or proxy behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nfsuidspawner.sandbox.hub import HubProcess, HubSettings, free_port

from .conftest import NAMESPACE, USERS

pytestmark = pytest.mark.e2e


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def hub(sandbox, tmp_path: Path):
    settings = HubSettings(
        state_dir=str(tmp_path / "hub"),
        kubeconfig=sandbox.kubeconfig,
        namespace=NAMESPACE,
        users=USERS,
        port=free_port(),
    )
    process = HubProcess(settings)
    process.start()
    yield process
    process.stop()


def test_stop_ends_the_proxy_of_a_hub_that_was_killed(hub: HubProcess) -> None:
    proxy = int((hub.state_dir / "proxy.pid").read_text())
    os.kill(hub.process.pid, signal.SIGKILL)  # the hub cannot stop its proxy now
    hub.process.wait()
    assert alive(proxy)

    hub.stop()

    deadline = time.monotonic() + 10
    while alive(proxy) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(proxy)


def test_stop_ends_the_hub_and_its_proxy(hub: HubProcess) -> None:
    pid = hub.process.pid
    proxy = int((hub.state_dir / "proxy.pid").read_text())

    hub.stop()

    time.sleep(0.5)
    assert not alive(pid) and not alive(proxy)

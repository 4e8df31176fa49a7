"""A hostile user's own lab, used against the initcontainer source's root phase; and its stop.

The lab container of that source starts as root: start.sh, its hooks and the image's conda
hook run as root before the switch to the user. Nothing the user can write may reach that
root, not even across a restart of their own lab.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import NAMESPACE, Hub, running_hub, source_settings

pytestmark = pytest.mark.e2e

# Written by the user into the image's HOME: Python runs a .pth file of the user site
# directory at startup, and the image's conda hook runs Python as root with that HOME.
PLANT = """
import os, subprocess, sys
site = "/home/jovyan/.local/lib/python{}.{}/site-packages".format(*sys.version_info[:2])
try:
    os.makedirs(site, exist_ok=True)
    with open(site + "/zz-attack.pth", "w") as pth:
        pth.write("import os; os.getuid() == 0 and open('/data/hpc/home/alice/root-was-here', 'w')\\n")
    print("planted")
except OSError as e:
    print("refused", e.strerror)
# Kill my own server a moment from now, as a user can: the lab exits non-zero.
subprocess.Popen(["sh", "-c", f"sleep 1; kill -KILL {os.getppid()}"], start_new_session=True)
"""


@pytest.fixture(scope="module")
def hub(sandbox, share, tmp_path_factory):
    settings = source_settings("initcontainer", share) | {"poll_interval": 1}
    with running_hub(sandbox, tmp_path_factory.mktemp("attack-hub"), spawner=settings) as hub:
        yield hub


async def wait_stopped(hub: Hub, user: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "" not in (await hub.user(user))["servers"]:
            return True
        await asyncio.sleep(0.5)
    return False


async def test_files_planted_for_the_root_phase_never_run_as_root(hub, share) -> None:
    await hub.start("alice")
    [first] = await hub.pods_of("alice")

    said = await hub.run_in_lab("alice", PLANT)
    stopped = await wait_stopped(hub, "alice")
    diagnosis = await hub.diagnose("alice")

    assert said.split()[0] == "refused", f"{said}\n{diagnosis}"
    assert stopped, f"the lab restarted in its pod instead of stopping\n{diagnosis}"
    assert not (share / "home" / "alice" / "root-was-here").exists(), diagnosis
    await hub.start("alice")
    [second] = await hub.pods_of("alice")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["status"]["containerStatuses"][0]["restartCount"] == 0
    await hub.stop("alice")


async def test_a_stopped_lab_shuts_down_on_sigterm_before_the_grace_period(hub) -> None:
    """The kubelet signals PID 1 (tini -g), which signals start.sh's group; sudo runs the lab
    on its own pty and relays SIGTERM only with KILL. Without it the lab is SIGKILLed."""
    await hub.start("alice")
    [pod] = await hub.pods_of("alice")
    meta = pod["metadata"]

    await hub.stop("alice")

    logs = hub.sandbox.state_dir / "kubelet" / "logs" / NAMESPACE / meta["name"] / meta["uid"]
    [lab_log] = logs.glob("notebook.*.log")
    assert "received signal 15, stopping" in lab_log.read_text(), lab_log.read_text()[-3000:]

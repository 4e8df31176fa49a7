"""Stopping a pod: what receives SIGTERM, and when SIGKILL comes (sandbox kubelet, root).

A kubelet signals the container's main process (its PID 1) only, and SIGKILLs what is left when
the grace period ends. In docker-stacks images PID 1 is `tini -g -- start.sh`: tini, with the
container's credentials, signals its child's process group, where sudo (root) and the lab (the
user) are. Root without CAP_KILL can signal neither the lab nor, when relaying, can sudo.
"""

from __future__ import annotations

import re

import pytest

from .pods import ROOT_SWITCH, Cluster, needs_sudo, notebook, sh

pytestmark = pytest.mark.sandbox

GRACE = 2
# The lab's command: say when it is up; on SIGTERM say who its parent is, and leave.
LAB = (
    "trap 'echo got SIGTERM under $(cat /proc/$PPID/comm); exit 0' TERM; "
    "echo ready; sleep 60 & wait"
)


async def stop(cluster: Cluster, name: str, container: str) -> float:
    await cluster.wait_for_line(name, "ready", container)
    return await cluster.delete(name, GRACE)


async def test_docker_stacks_lab_without_cap_kill_is_only_sigkilled(cluster: Cluster) -> None:
    needs_sudo()
    await cluster.create("nokill", [notebook(["sh", "-c", LAB], hook=False)])

    seconds = await stop(cluster, "nokill", "notebook")

    out = cluster.log("nokill", "notebook")
    assert "got SIGTERM under sudo" not in out.splitlines() and seconds >= GRACE
    assert re.search(r"^sudo: kill\(\d+, SIGTERM\): Operation not permitted$", out, re.M), out


async def test_docker_stacks_lab_with_cap_kill_gets_sigterm_and_exits(cluster: Cluster) -> None:
    needs_sudo()
    caps = (*ROOT_SWITCH, "KILL")
    await cluster.create("kill", [notebook(["sh", "-c", LAB], hook=False, caps=caps)])

    seconds = await stop(cluster, "kill", "notebook")

    assert "got SIGTERM under sudo" in cluster.log("kill", "notebook").splitlines()
    assert seconds < GRACE


async def test_other_images_signal_the_main_process_only(cluster: Cluster) -> None:
    # The main process ignores SIGTERM; its child would say if it got one.
    child = "(trap 'echo child got SIGTERM; exit 0' TERM; echo ready; sleep 60 & wait) &"
    await cluster.create("mainonly", [sh(f"{child} trap '' TERM; wait")])

    seconds = await stop(cluster, "mainonly", "c")

    assert "child got SIGTERM" not in cluster.log("mainonly").splitlines() and seconds >= GRACE

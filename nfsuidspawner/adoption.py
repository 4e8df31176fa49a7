"""A lab whose start a restarted hub found unfinished: its pod is waited for as the start would.

When JupyterHub starts, it checks every server its database holds (app.py, check_spawner): a
server that poll() finds running is asked for its URL (Spawner.get_url), and stopped unless
it answers there within http_timeout. The URL was saved when the start began, before the pod
had an address; KubeSpawner does not implement get_url, and its poll() corrects the URL only
once the pod runs. A lab whose pod was still starting was checked where nothing answers, and
stopped without a word to its user. The spawner's get_url waits for the pod with these
helpers, at most what is left of the start's start_timeout, and gives the pod's address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jupyterhub.utils import utcnow

from . import status
from .cleanup import Pod


def time_left(started: datetime | None, start_timeout: float) -> float:
    """What is left now of a start's start_timeout (all of it when its start is unknown).
    JupyterHub records `started` in UTC, without a time zone."""
    if started is None:
        return start_timeout
    return start_timeout - (utcnow(with_tz=False) - started).total_seconds()


async def wait_for_pod(
    pod: Pod, running: Callable[[dict[str, Any]], bool], seconds: float, interval: float = 0.5
) -> dict[str, Any] | None:
    """The pod once `running(pod)`, or as it is once `seconds` have passed or its identity
    initContainer failed; None once it is gone. Looks every `interval` s."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (found := pod()) and not status.init_failure(found):
        if running(found) or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(interval)
    return found

"""The hub side of the load benchmark: its REST API as the admin service, and the probe that
reports the hub's garbage collection.

A helper of bench_load.py; see its docstring for what is measured and how.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from load_report import Outcome

if TYPE_CHECKING:
    from nfsuidspawner.sandbox.hub import HubSettings

# Loaded into the hub: its time in garbage collection (CPU of the collecting thread), and how
# many full collections, written to a file every 0.2 s. A full collection walks every object
# the hub holds, so it is the part of the hub's CPU that grows with what its reflectors hold.
GC_PROBE = """
import gc as _gc, os as _os, threading as _threading, time as _time
def _bench_gc_probe(path, spent=[0.0, 0], began=[0.0]):
    def on_gc(phase, info):
        if phase == "start":
            began[0] = _time.thread_time()
        else:
            spent[0] += _time.thread_time() - began[0]
            spent[1] += info["generation"] == 2
    def write():
        while True:
            with open(path + ".new", "w") as out:
                out.write(f"{spent[0]} {spent[1]}")
            _os.replace(path + ".new", path)
            _time.sleep(0.2)
    _gc.callbacks.append(on_gc)
    _threading.Thread(target=write, daemon=True).start()
"""


def hub_gc(path: Path) -> tuple[float, int]:
    """The hub's GC seconds and full collections so far (GC_PROBE)."""
    seconds, full = path.read_text().split()
    return float(seconds), int(full)


class HubApi:
    """The hub's REST API on its own port (not through the proxy), as the admin service."""

    def __init__(self, settings: HubSettings) -> None:
        self.base = f"http://{settings.ip}:{settings.hub_port}/hub/api"
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"token {settings.api_token}"},
            connector=aiohttp.TCPConnector(limit=0),  # one connection per user at once
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def servers(self, state: str) -> set[str]:
        """Users with a server in `state` ("active" or "ready"), one page of 200 at a time."""
        names: set[str] = set()
        headers = {"Accept": "application/jupyterhub-pagination+json"}
        offset = 0
        while True:
            url = f"{self.base}/users?state={state}&offset={offset}&limit=200"
            async with self.session.get(url, headers=headers) as response:
                response.raise_for_status()
                page = await response.json()
            names.update(user["name"] for user in page["items"] if "" in user["servers"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["_pagination"]["total"]:
                return names

    async def start(self, user: str) -> Outcome:
        began = time.monotonic()
        status, body = await self.call("POST", f"/users/{user}/server")
        if status == 202:  # still pending past slow_spawn_timeout: poll this one
            while True:
                await asyncio.sleep(1)
                status, model = await self.call("GET", f"/users/{user}")
                server = model.get("servers", {}).get("") if status == 200 else None
                if server and server["ready"]:
                    return Outcome(time.monotonic() - began)
                if not server:
                    return Outcome(error="failed after HTTP 202 (the hub log says why)")
        if status in (200, 201):
            return Outcome(time.monotonic() - began)
        message = body.get("message", body) if isinstance(body, dict) else body
        return Outcome(error=f"HTTP {status}: {str(message).strip()[:300]}")

    async def stop(self, user: str) -> None:
        status, _ = await self.call("DELETE", f"/users/{user}/server")
        if status == 202:
            while "" in (await self.call("GET", f"/users/{user}"))[1].get("servers", {}):
                await asyncio.sleep(1)

"""The sandbox kubelet's client of the API server: requests, and a list-and-watch loop.

Like a real kubelet it is an ordinary HTTP client of the API server (a bearer token, JSON in and
out). A request is tried again while the API server cannot be reached or is unavailable (it
restarts), as a real kubelet's status updates and volume setup are, for up to half a minute.
:meth:`ApiClient.watch` follows a watch from a resourceVersion, hands each event to the kubelet,
and relists when the stream breaks or its resourceVersion has expired (410).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from .runtime import Obj

log = logging.getLogger(__name__)


class ApiStatusError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"API answered {status}: {body[:300]}")
        self.status = status


# Answers that say "not now" rather than "no": a request meeting them is tried again.
UNAVAILABLE = (502, 503, 504)


class ApiClient:
    """Requests to the API server at `api_url` with a bearer token (open() before use).

    A request that cannot reach the server, loses its connection, or is answered 502, 503 or
    504 is tried again, after 0.1 s and then up to 1 s apart, for up to `retry_for` seconds.
    """

    def __init__(self, api_url: str, token: str, retry_for: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.retry_for = retry_for
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Obj | None = None,
                      params: dict[str, str] | None = None) -> Obj:  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay = 0.1
        while True:
            try:
                return await self._request_once(method, path, body, params)
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as e:
                error: Exception = e
            except ApiStatusError as e:
                if e.status not in UNAVAILABLE:
                    raise
                error = e
            if loop.time() + delay > deadline:
                raise error
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)

    async def _request_once(self, method: str, path: str, body: Obj | None,
                            params: dict[str, str] | None) -> Obj:  # fmt: skip
        assert self._session is not None
        async with self._session.request(method, self.api_url + path, json=body,
                                         params=params) as resp:  # fmt: skip
            text = await resp.text()
            if resp.status >= 300:
                raise ApiStatusError(resp.status, text)
            return json.loads(text)

    async def watch(
        self,
        path: str,
        rv: str,
        on_event: Callable[[str, Obj], None],
        relist: Callable[[], Awaitable[str]],
    ) -> None:
        """Watch `path` from resourceVersion `rv` until cancelled; relist() on any break."""
        assert self._session is not None
        while True:
            try:
                params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "60"}
                async with self._session.get(self.api_url + path, params=params) as resp:
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
                            on_event(ev["type"], ev["object"])
                    if expired:
                        rv = await relist()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, ApiStatusError, ValueError) as e:
                log.warning("pod watch: %s; relisting", e)
                await asyncio.sleep(0.5)
                try:
                    rv = await relist()
                except (aiohttp.ClientError, ApiStatusError) as e2:
                    log.warning("pod relist: %s", e2)

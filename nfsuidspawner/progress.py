"""The spawn page's progress: KubeSpawner's events, with the spawner's notes as they are made.

A note (what the spawner decided: the directory it checks, whom the lab runs as, a refusal)
is shown as soon as it is made, between KubeSpawner's events. A refusal is noted as it ends
the spawn, when KubeSpawner's events may have ended already, and JupyterHub reads progress
only until the spawn has ended: so the events go on until the start has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

Event = dict[str, Any]


async def merged(
    events: AsyncGenerator[Event, None],
    notes: list[str],
    noted: asyncio.Event,
    started: Callable[[], asyncio.Future | None],
) -> AsyncIterator[Event]:
    """`events`, with each of `notes` (appended to as the spawn goes; `noted` is set then) as
    soon as it is there, until `events` and the start (`started()`, None before it began)
    have both ended."""
    next_event: asyncio.Future | None = asyncio.ensure_future(anext(events))
    sent, percent = 0, 0
    try:
        while True:
            while sent < len(notes):
                yield {"progress": percent, "message": notes[sent]}
                sent += 1
            noted.clear()
            until = next_event or started()
            if until is None or (next_event is None and until.done()):
                return
            waiting = asyncio.ensure_future(noted.wait())
            try:
                await asyncio.wait([until, waiting], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if next_event and next_event.done():
                try:
                    event = next_event.result()
                except StopAsyncIteration:
                    next_event = None
                    continue
                percent = event.get("progress", percent)
                yield event
                next_event = asyncio.ensure_future(anext(events))
    finally:
        if next_event:
            next_event.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await next_event
        await events.aclose()

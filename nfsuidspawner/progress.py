"""The spawn page's progress: KubeSpawner's events, with the spawner's notes as they are made.

A note (what the spawner decided: the directory it checks, whom the lab runs as, a refusal)
is shown as soon as it is made, between KubeSpawner's events. A refusal is noted as it ends
the spawn, when KubeSpawner's events may have ended already, and JupyterHub reads progress
only until the spawn has ended: so the events go on until the start has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from .identity import Identity
from .manifests import Layout

Event = dict[str, Any]


def runs_as(layout: Layout, identity: Identity) -> str:
    """The note that says whom the lab runs as."""
    return (
        f"nfsuid: {layout.user} runs as {identity.uid}:{identity.gid},"
        f" the owner of {layout.share_path}"
    )


def pod_events(
    events: Iterable[Event], namespace: str, pod_name: str, after: str | None
) -> list[Event]:
    """KubeSpawner's `events`, but only this pod's: the Kubernetes events about the pod
    `namespace`/`pod_name`, oldest first, after the one whose uid is `after` (the newest
    before this start).

    KubeSpawner matches the pod's name only. With `enable_user_namespaces` its reflector
    watches every namespace, and a `pod_name_template` without the username (`jupyter`, one
    pod per user namespace) would show every user the events of the others' pods, which can
    name their paths. So the namespace must match too.

    KubeSpawner also sorts every event it holds on each call: twice a start, and once a
    second for each spawn page that is open. A burst fills the namespace with events (each
    pod here brings three more, its initContainer's), so this picks the pod's first and
    sorts only those. The sort is stable: events of the same time keep KubeSpawner's order.
    """
    mine = [
        e
        for e in events
        if (about := e.get("involvedObject") or {}).get("name") == pod_name
        and about.get("namespace") == namespace
    ]
    mine.sort(key=lambda e: e["lastTimestamp"] or e["eventTime"])
    for i in range(len(mine) - 1, -1, -1):
        if mine[i]["metadata"]["uid"] == after:
            return mine[i + 1 :]
    return mine


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

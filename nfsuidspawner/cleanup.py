"""Deleting the lab pods that a start did not mean to keep, by uid, for a bounded time, and
never another server's pod.

The API server may carry out a pod create that KubeSpawner gave up waiting for: the pod then
appears after the start failed (the hub deletes only the pods its poll sees), or in the way
of the same start's next attempt (KubeSpawner deletes a pod that has the name on a 409
Conflict). These helpers delete only the pod they saw, by its uid, so that they never take a
newer start's pod, and they end in bounded time. They read the pod as the spawner's reflector
holds it, through a callable, and delete through another: the spawner is the glue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

Pod = Callable[[], dict[str, Any] | None]
Delete = Callable[[str], Awaitable[None]]

# What KubeSpawner writes on every pod it makes (_build_common_annotations): the names
# themselves, where its labels hold slugs that two names can share.
OWNER_ANNOTATIONS = ("hub.jupyter.org/username", "hub.jupyter.org/servername")


def foreign(pod: dict[str, Any] | None, user: str, server: str) -> bool:
    """Whether `pod` is there and its annotations do not say it is the pod of `user`'s server
    `server` ("" for the default one); a pod without them is foreign too. Such a pod has the
    name because pod_name_template gives two servers one name: the spawner never deletes
    it, and never takes it for its server's lab (its address, its identity)."""
    annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    owner = tuple(annotations.get(key) or "" for key in OWNER_ANNOTATIONS)
    return pod is not None and owner != (user, server or "")


async def delete_pod(api: Any, namespace: str, name: str, uid: str, timeout: float) -> None:
    """Delete the pod now if it is still the one with this uid. Failures are left to the
    caller's next look: the pod is still there then."""
    options = client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
    )
    with contextlib.suppress(ApiException, TimeoutError):
        await asyncio.wait_for(api.delete_namespaced_pod(name, namespace, body=options), timeout)


def _live_uid(pod: dict[str, Any] | None) -> str | None:
    """The uid of a pod that is not being deleted already."""
    meta = (pod or {}).get("metadata") or {}
    return None if not pod or meta.get("deletionTimestamp") else meta["uid"]


async def clear_the_way(
    pod: Pod, delete: Delete, timeout: float, interval: float = 0.2, again: float = 1.0
) -> bool:
    """Delete the pod that has the name (again every `again` s), and wait until it is gone;
    False if it is still there after `timeout` s.

    A pod with another uid that takes the name meanwhile (a late create) ends the wait: the
    caller creates again, meets that pod, and comes back.
    """
    loop = asyncio.get_running_loop()
    deadline, retry = loop.time() + timeout, loop.time()
    first = pod()
    seen = first["metadata"]["uid"] if first else None
    while (now := pod()) and now["metadata"]["uid"] == seen:
        if loop.time() > deadline:
            return False
        if loop.time() >= retry and (uid := _live_uid(now)):
            await delete(uid)
            retry = loop.time() + again
        await asyncio.sleep(interval)
    return True


async def reap(
    pod: Pod,
    delete: Delete,
    wanted: Callable[[], bool],
    held: Callable[[], bool],
    window: float,
    interval: float = 1.0,
) -> None:
    """Delete whatever pod has the name while `wanted()`, for `window` s once `held()` is
    false (the hub has let go of the server), looking every `interval` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    while wanted() and loop.time() < deadline:
        if held():
            deadline = loop.time() + window
        elif uid := _live_uid(pod()):
            await delete(uid)
        await asyncio.sleep(interval)

"""Reading what the kubelet reports about the identity initContainer.

KubeSpawner waits for a pod to be ready and, when an initContainer fails, would
only time out. These pure functions read the pod as KubeSpawner's reflector
holds it (a camelCase dict) so that a refusal is shown at once, in its own words.
"""

from __future__ import annotations

from typing import Any

from .manifests import INIT_CONTAINER, NOTEBOOK_CONTAINER
from .script import parse_resolved

# Waiting reasons that no amount of waiting fixes.
_STUCK = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
}


def _init_status(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") == INIT_CONTAINER:
            return status
    return None


def init_failure(pod: dict[str, Any] | None) -> str | None:
    """Why the identity initContainer failed, or None while it has not failed."""
    status = _init_status(pod)
    if status is None:
        return None
    for state in (status.get("state") or {}, status.get("lastState") or {}):
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") != 0:
            message = (terminated.get("message") or "").strip()
            return message or (
                f"the {INIT_CONTAINER} initContainer exited with code"
                f" {terminated.get('exitCode')} ({terminated.get('reason')})"
            )
    waiting = (status.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in _STUCK:
        return f"the {INIT_CONTAINER} initContainer cannot start: {waiting['reason']}: " + (
            waiting.get("message") or ""
        )
    return None


def resolved_identity(pod: dict[str, Any] | None) -> tuple[int, int] | None:
    """The uid and gid the initContainer found, from its success message."""
    status = _init_status(pod)
    terminated = ((status or {}).get("state") or {}).get("terminated") or {}
    if terminated.get("exitCode") != 0:
        return None
    return parse_resolved(terminated.get("message"))


def lab_identity(pod: dict[str, Any] | None) -> tuple[int, int] | None:
    """Who the pod's lab runs as: the user and group of its notebook container when the hub
    set them (a known identity), else what the initContainer found, which start.sh switches
    to. Both are the hub's or the kubelet's words: nothing the lab can write."""
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == NOTEBOOK_CONTAINER:
            security = container.get("securityContext") or {}
            uid, gid = security.get("runAsUser"), security.get("runAsGroup")
            if uid and gid:  # 0: the root phase of a lab whose identity the pod finds
                return uid, gid
    return resolved_identity(pod)


def _said(what: str, words: dict[str, Any]) -> str:
    """`what`, with the reason and message the kubelet or scheduler gave."""
    said = ": ".join(str(w).strip() for w in (words.get("reason"), words.get("message")) if w)
    return f"{what} ({said})" if said else what


def _container_waits(kind: str, status: dict[str, Any]) -> str | None:
    """What a container that holds the pod up is doing; None if it holds nothing up."""
    name, state = status.get("name"), status.get("state") or {}
    if "waiting" in state:
        return _said(f"{kind} {name} is waiting", state["waiting"])
    if kind == "initContainer" and "running" in state:
        if name == INIT_CONTAINER:
            return (
                f"initContainer {name} is still reading the owner of the user's directory"
                " (an NFS server that does not answer holds it)"
            )
        return f"initContainer {name} is still running"
    if "running" in state and not status.get("ready"):
        return f"container {name} runs but is not ready"
    terminated = state.get("terminated")
    if terminated and (kind == "container" or terminated.get("exitCode") != 0):
        return _said(f"{kind} {name} exited with code {terminated.get('exitCode')}", terminated)
    return None


def not_ready(pod: dict[str, Any] | None) -> str:
    """What a pod that is not ready waits for, in the scheduler's and the kubelet's words."""
    if not pod:
        return "the hub sees no such pod"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "the pod is being deleted"
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _said("no node was found for it", condition)
    for kind, key in (
        ("initContainer", "initContainerStatuses"),
        ("container", "containerStatuses"),
    ):
        for container in status.get(key) or []:
            if waits := _container_waits(kind, container):
                return waits
    phase = status.get("phase") or "Pending"
    return f"it is {phase}" + ("" if status.get("podIP") else ", without an IP address")


def last_event(events: list[dict[str, Any]], pod: dict[str, Any] | None) -> str | None:
    """The newest of the events (oldest first, as KubeSpawner holds them) about this pod, by
    uid: an earlier pod of the same name had events of its own."""
    uid = ((pod or {}).get("metadata") or {}).get("uid")
    about = [e for e in events if uid and (e.get("involvedObject") or {}).get("uid") == uid]
    if not about:
        return None
    words = (about[-1].get("reason"), about[-1].get("message"))
    return ": ".join(str(w).strip() for w in words if w) or None

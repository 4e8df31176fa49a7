"""What a start that failed, rather than was refused, tells its user.

KubeSpawner's exceptions say what went wrong in the API client's words: "(500)" and the
response's headers, "Server disconnected", "Could not create pod ns/name". They name neither
the user nor what to do. These pure functions make the line that does; the spawner sets it as
the exception's ``jupyterhub_message``, which JupyterHub shows on the spawn page and in its
REST API, and re-raises the exception itself, so that JupyterHub handles it as before (a
TimeoutError is still a timeout).

JupyterHub's own start timeout raises a TimeoutError with no words. The spawner ends a start
whose pod is not ready a little before it (start_budget), with a TimeoutError of its own that
says what the pod was waiting for.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio.client.rest import ApiException
from tornado import web

from . import status

Found = dict[str, Any] | None  # a pod, as KubeSpawner's reflector holds it
Events = list[dict[str, Any]]

API_FIX = (
    "start the server again. If it fails again, check that the Kubernetes API server is up"
    " and answers the hub in time; the hub's log has the full error"
)
OTHER_FIX = "the hub's log has the traceback; start the server again once it is fixed"
NOT_READY_FIX = (
    "if it only needs longer (a new node, a large image), raise c.KubeSpawner.start_timeout;"
    " otherwise `kubectl describe pod` shows what holds it"
)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _api_status_message(body: object) -> str:
    """The message of the Kubernetes Status an API error's body holds, if it is one."""
    try:
        status = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return _first_line(message)[:200] if isinstance(message, str) else ""


def _cause(error: Exception) -> tuple[str, bool]:
    """What went wrong, in one line, and whether the API server (or the way to it) failed."""
    if isinstance(error, ApiException):
        said = _api_status_message(error.body)
        answer = f"({error.status}) {error.reason or ''}".strip()
        return f"the Kubernetes API answered {answer}" + (f": {said}" if said else ""), True
    text = _first_line(str(error))
    # Before OSError: a TimeoutError is one.
    if isinstance(error, TimeoutError):
        return f"timed out: {text}" if text else "timed out", True
    if isinstance(error, aiohttp.ClientError | OSError):
        return f"the connection to the Kubernetes API failed: {text or type(error).__name__}", True
    return f"{type(error).__name__}: {text}" if text else type(error).__name__, False


def start_failure(user: str, pod: str, error: BaseException) -> str | None:
    """The line a start that `error` ended shows, or None when the error has one already
    (a refusal, an HTTPError meant for the user) or is not a failure (a cancellation)."""
    if not isinstance(error, Exception) or isinstance(error, web.HTTPError):
        return None
    if getattr(error, "jupyterhub_message", None):
        return None
    cause, api = _cause(error)
    fix = API_FIX if api else OTHER_FIX
    return f"nfsuid: user {user}: starting pod {pod} failed: {cause}. Fix: {fix}"


def pod_not_gone(user: str, pod: str, seconds: float) -> str:
    """The line for a pod in the way of a start that does not go away when deleted."""
    return (
        f"nfsuid: user {user}: pod {pod}, left by an earlier start or attempt, was still there"
        f" {seconds:g} s after the hub deleted it to start a new one. Fix: start the server again. If it fails"
        " again, `kubectl describe pod` shows what holds it (finalizers, its node)"
    )


def name_taken(user: str, pod: str) -> str:
    """The line for a start whose pod name another server's pod has (cleanup.foreign). It
    does not say whose: that is in the hub's log."""
    return (
        f"nfsuid: user {user}: pod {pod} belongs to another server (of this user or another),"
        " and the hub never deletes or uses another server's pod. Fix: an admin makes"
        " c.KubeSpawner.pod_name_template give every user and server a pod name of its own,"
        " as its default, jupyter-{user_server}, does"
    )


def timed_out(message: str) -> TimeoutError:
    """A TimeoutError (JupyterHub handles it as a start that timed out) that says `message`."""
    error = TimeoutError(message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    return error


def start_budget(start_timeout: float) -> float:
    """How long the spawner lets its start run: a little less than JupyterHub's start_timeout,
    so that it ends first and says why. JupyterHub's own timeout says nothing."""
    return start_timeout - min(2.0, start_timeout / 10)


def _waiting(found: Found, events: Events) -> str:
    event = status.last_event(events, found)
    return status.not_ready(found) + (f"; its last event: {event}" if event else "")


def refused(user: str, reason: str) -> str:
    """The line for the identity initContainer's refusal: its own (which names the user, the
    path and the fix), or the kubelet's words about it, with the user's name."""
    return reason if reason.startswith("nfsuid:") else f"nfsuid: user {user}: {reason}"


def not_ready(user: str, pod: str, start_timeout: float, found: Found, events: Events) -> str:
    """The line for a start whose pod (`found`, with its `events`) was not ready within
    start_timeout."""
    return (
        f"nfsuid: user {user}: pod {pod} was not ready within start_timeout ({start_timeout:g} s):"
        f" {_waiting(found, events)}. Fix: {NOT_READY_FIX}"
    )


def not_adopted(user: str, pod: str, start_timeout: float, found: Found, events: Events) -> str:
    """The hub's log line for a lab whose start a restarted hub found unfinished, and whose pod
    was not ready in the time that start had left, or was refused."""
    if reason := status.init_failure(found):
        return refused(user, reason)
    return (
        f"nfsuid: user {user}: the hub restarted during the start of pod {pod}, which is not"
        f" ready: {_waiting(found, events)}. It had until start_timeout ({start_timeout:g} s)"
        " from its start; the hub stops the server unless it answers within http_timeout."
        f" Fix: start the server again; {NOT_READY_FIX}"
    )

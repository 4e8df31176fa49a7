"""Where an identity comes from when the hub finds it: its own mount of the share, or NSS.

These are the only functions that touch the hub's filesystem or user database.
What they find passes through the guard rails in :mod:`nfsuidspawner.identity`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import grp
import os
import pwd
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from jupyterhub.utils import maybe_future

from .errors import NFSUIDError
from .identity import Identity, check_ids, check_type

T = TypeVar("T")


# Stats still running, by path: a retry while the server hangs joins the stat in flight
# instead of leaving one more thread stuck in the kernel.
_in_flight: dict[str, concurrent.futures.Future] = {}


async def in_daemon_thread(key: str, func: Callable[[], T], timeout: float) -> T:
    """Run blocking `func` in a thread of its own and wait at most `timeout` seconds.

    A stat on a hung NFS server blocks in the kernel, uninterruptibly. A daemon
    thread (not the loop's executor) may then stay stuck without taking an
    executor slot from other users or holding up the hub's exit. Calls with the
    same `key` while one is running share its thread and its result.
    """
    future = _in_flight.get(key)
    if future is None:
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        _in_flight[key] = future

        def run() -> None:
            try:
                future.set_result(func())
            except BaseException as e:  # handed to every waiting coroutine
                future.set_exception(e)
            finally:
                _in_flight.pop(key, None)

        threading.Thread(target=run, name="nfsuid-stat", daemon=True).start()
    waiting = asyncio.wrap_future(future)
    # An outcome that arrives after every waiter timed out is nobody's error.
    waiting.add_done_callback(lambda done: done.cancelled() or done.exception())
    # shield: a waiter that times out must not cancel the stat others wait for.
    return await asyncio.wait_for(asyncio.shield(waiting), timeout)


def _walk(root: str, relative: str) -> tuple[int, str, int, int]:
    """Walk `relative` below `root` one component at a time, following no link.

    Returns how many components were walked, what the last one walked is ("missing",
    "symlink", "directory" or "other") and its owner. A link or a non-directory stops the
    walk: whatever it points at is never looked at.
    """
    os.stat(root)  # the hub's own mount: missing is trouble with it, not with the user
    path = root
    parts = relative.split("/")
    for depth, part in enumerate(parts, start=1):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return depth, "missing", -1, -1
        if stat.S_ISLNK(st.st_mode):
            return depth, "symlink", st.st_uid, st.st_gid
        if not stat.S_ISDIR(st.st_mode):
            return depth, "other", st.st_uid, st.st_gid
    return len(parts), "directory", st.st_uid, st.st_gid


async def owner_on_hub_mount(
    user: str,
    hub_root: str,
    home_dir: str,
    shown_root: str,
    timeout: float,
    min_uid: int,
    min_gid: int,
) -> Identity:
    """The owner of `home_dir` below `hub_root`, the hub's read-only mount of the share.

    Every component of the path is walked without following links, so a link anywhere
    on the way (an alias such as home/asmith -> bob) is refused. A refusal names the
    path below `shown_root`, as labs and users know it, so that the hub says what the
    initContainer would; trouble with the hub's mount names the hub's path.
    """
    path = f"{hub_root.rstrip('/')}/{home_dir}"
    try:
        depth, kind, uid, gid = await in_daemon_thread(
            path, lambda: _walk(hub_root, home_dir), timeout
        )
    except TimeoutError:
        raise NFSUIDError(
            f"nfsuid: user {user}: stat of {path} did not answer within {timeout:g} s."
            " Fix: check that the NFS server is up and the hub's mount of the share is"
            " healthy, or raise c.NFSUIDSpawner.identity_timeout"
        ) from None
    except OSError as e:
        raise NFSUIDError(
            f"nfsuid: user {user}: cannot stat {path} on the hub: {e.strerror}."
            " Fix: mount the share read-only in the hub at c.NFSUIDSpawner.hub_share_path"
        ) from None
    shown = "/".join([shown_root.rstrip("/"), *home_dir.split("/")[:depth]])
    check_type(user, shown, kind)
    return check_ids(user, shown, uid, gid, min_uid, min_gid)


def nss_identity(spawner: Any) -> Identity:
    """An identity source that asks the hub's NSS (passwd/group, LDAP or SSSD through nsswitch).

    Use it as ``c.NFSUIDSpawner.identity_source = nfsuidspawner.nss_identity``.
    The gid is the user's primary group in passwd.
    """
    name = spawner.user.name
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NFSUIDError(
            f"nfsuid: user {name}: no passwd entry on the hub (NSS)."
            " Fix: make the hub's nsswitch reach your user directory (LDAP or SSSD),"
            " or use identity_source 'initcontainer' or 'hub'"
        ) from None
    try:
        grp.getgrgid(entry.pw_gid)
    except KeyError:
        raise NFSUIDError(
            f"nfsuid: user {name}: primary gid {entry.pw_gid} has no group entry on the hub"
            " (NSS). Fix: make the hub's nsswitch reach your groups"
        ) from None
    return Identity(entry.pw_uid, entry.pw_gid)


def _nss_groups(name: str) -> tuple[int | None, list[tuple[int, str]]]:
    """The uid NSS gives `name`, and its groups; no uid and no groups for a name NSS lacks."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None, []
    found = []
    for gid in os.getgrouplist(name, entry.pw_gid):
        try:
            found.append((gid, grp.getgrgid(gid).gr_name))
        except KeyError:
            found.append((gid, ""))  # no name: the guard rails leave it out, saying so
    return entry.pw_uid, found


async def supplementary_groups(
    source: Any, spawner: Any, timeout: float
) -> tuple[list[tuple[int, str]], int | None]:
    """The (gid, name) pairs `source` gives for the spawner's user, before the guard rails,
    and the uid they belong to when the source says (NSS does).

    "none" gives none; "nss" asks the hub's NSS (os.getgrouplist, names from grp), in a
    thread with `timeout`, since LDAP or SSSD can hang; a callable may be sync or async.
    """
    user = spawner.user.name
    if source == "none":
        return [], None
    if source == "nss":
        try:
            uid, found = await in_daemon_thread(
                f"groups:{user}", lambda: _nss_groups(user), timeout
            )
        except TimeoutError:
            raise NFSUIDError(
                f"nfsuid: user {user}: the hub's NSS did not list the user's groups within"
                f" {timeout:g} s. Fix: check the hub's LDAP or SSSD, or raise"
                " c.NFSUIDSpawner.identity_timeout"
            ) from None
        return found, uid
    found = await maybe_future(source(spawner))
    try:
        return [(int(gid), str(name)) for gid, name in found], None
    except (TypeError, ValueError):
        raise NFSUIDError(
            f"nfsuid: user {user}: supplemental_groups returned {found!r}, not a list of"
            " (gid, name) pairs. Fix: return [(5001, 'p1'), ...]"
        ) from None

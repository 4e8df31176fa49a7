"""Where an identity comes from when the hub finds it: its own mount of the share, or NSS.

These are the only functions that touch the hub's filesystem or user database.
What they find passes through the guard rails in :mod:`nfsuidspawner.identity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import grp
import os
import pwd
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import NFSUIDError
from .identity import Identity, check_ids, check_type

T = TypeVar("T")


async def in_daemon_thread(func: Callable[[], T], timeout: float) -> T:
    """Run blocking `func` in a thread of its own and wait at most `timeout` seconds.

    A stat on a hung NFS server blocks in the kernel, uninterruptibly. A daemon
    thread (not the loop's executor) may then stay stuck without taking an
    executor slot from other users or holding up the hub's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def report(outcome: Callable[[], None]) -> None:
        # The loop may have closed while the stat hung: then nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    def run() -> None:
        try:
            result = func()
        except BaseException as e:  # handed to the waiting coroutine
            report(functools.partial(future.set_exception, e))
        else:
            report(functools.partial(future.set_result, result))

    threading.Thread(target=run, name="nfsuid-stat", daemon=True).start()
    return await asyncio.wait_for(future, timeout)


def _lstat_kind(path: str) -> tuple[str, int, int]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing", -1, -1
    if stat.S_ISLNK(st.st_mode):
        return "symlink", st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        return "directory", st.st_uid, st.st_gid
    return "other", st.st_uid, st.st_gid


async def owner_on_hub_mount(
    user: str, path: str, shown_path: str, timeout: float, min_uid: int, min_gid: int
) -> Identity:
    """The owner of `path` on the hub's read-only mount of the share.

    A refusal names `shown_path`, the directory as labs and users know it, so that the
    hub says what the initContainer would; trouble with the hub's mount names `path`.
    """
    try:
        kind, uid, gid = await in_daemon_thread(lambda: _lstat_kind(path), timeout)
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
    check_type(user, shown_path, kind)
    return check_ids(user, shown_path, uid, gid, min_uid, min_gid)


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

"""A FUSE mount whose server never answers: every request to it blocks, like a hung NFS server.

The test opens /dev/fuse and mounts it with mount(2) itself, then never reads the device,
so the kernel's FUSE_INIT and every later request stay unanswered. A stat that needs the
server waits in the kernel until the connection is aborted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SOURCE = "nfsuid-hung"
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class HungMount:
    path: str
    fuse_fd: int
    minor: int


def why_not_possible() -> str | None:
    """Why this process cannot make a hung mount, or None if it can."""
    if os.geteuid() != 0:
        return "needs root: mount(2) of a FUSE filesystem needs CAP_SYS_ADMIN"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse: no FUSE device in this environment"
    return None


def mounted(path: str) -> list[str]:
    """The lines of /proc/self/mountinfo for mounts at `path`."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4] == path]


def _minor(path: str) -> int:
    # Not os.stat(path).st_dev: that stat would itself hang.
    for line in mounted(path):
        return int(line.split()[2].split(":")[1])
    raise RuntimeError(f"{path} is not in /proc/self/mountinfo")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def abort(mount: HungMount) -> None:
    """Fail every pending and future request on the mount, which releases stuck threads."""
    control = f"/sys/fs/fuse/connections/{mount.minor}/abort"
    if os.path.exists(control):
        with open(control, "w") as f:
            f.write("1")


@contextmanager
def hung_mount() -> Iterator[HungMount]:
    """Mount a FUSE filesystem that never answers; abort, unmount and remove it on exit."""
    workdir = tempfile.mkdtemp(prefix="nfsuid-hung-")
    path = os.path.join(workdir, "share")
    os.mkdir(path)
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    is_mounted = False
    try:
        data = f"fd={fd},rootmode=40000,user_id=0,group_id=0"
        flags = MS_NOSUID | MS_NODEV
        _check(
            _libc.mount(SOURCE.encode(), path.encode(), b"fuse", flags, data.encode()),
            f"mount {path}",
        )
        is_mounted = True
        mount = HungMount(path, fd, _minor(path))
        try:
            yield mount
        finally:
            abort(mount)
    finally:
        # Closing the last descriptor of the device aborts the connection too (the
        # only way when fusectl is not mounted), so this runs whatever happened above.
        os.close(fd)
        try:
            if is_mounted:
                _check(_libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")
        finally:
            os.rmdir(path)
            os.rmdir(workdir)

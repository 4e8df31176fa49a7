"""A volumeMount's subPath, decided the way a Linux kubelet decides it.

Each step and its error text follow the kubelet's code (Kubernetes 1.3x):

* ``pkg/kubelet/kubelet_pods.go`` ``makeMounts``: the subPath must be relative and free of
  ``..`` (``ValidatePathNoBacksteps``); ``hostPath = filepath.Join(volumePath, subPath)``; if
  ``os.Stat(hostPath)`` says it does not exist (so a dangling link counts as missing), it is
  created by ``SafeMakeDir`` with the mode of the volume root; then ``PrepareSafeSubpath``. Either
  failure reaches the user only as "failed to create subPath directory ..." or "failed to prepare
  subPath ...": the kubelet keeps the details out of the pod's status.
* ``pkg/volume/util/subpath/subpath_linux.go`` ``doSafeMakeDir`` / ``findExistingPrefix``: the
  longest existing prefix is found by opening each component *following* links; that prefix,
  resolved, must lie inside the resolved volume, is re-opened without following links
  (``doSafeOpen``), and each missing directory is made with ``mkdirat`` (owned by the kubelet,
  root) and ``fchmod``-ed to the volume root's mode. A dangling link is "missing" to ``os.Stat``
  but exists to ``mkdirat``, which then fails with EEXIST.
* ``doBindSubPath`` / ``safeOpenSubPath``: the subPath and the volume are resolved with
  ``filepath.EvalSymlinks`` (absolute link targets resolve on the node's own filesystem); the
  result must lie inside the resolved volume ("not within volume path"); it is then opened one
  component at a time beneath the volume with ``O_NOFOLLOW`` ("unexpected symlink found" if one
  was swapped in since) and that file descriptor is bind-mounted. The container therefore sees
  the link's target, a plain directory or file, never the link.

The sandbox splits the last step in two: the kubelet side (:func:`prepare`) resolves and checks,
and the runtime shim re-opens the resolved path with :func:`safe_open` just before it mounts it.
Stdlib only: the shim imports this module by file, without the package.
"""

from __future__ import annotations

import os
import posixpath
import stat

__all__ = ["Refused", "SubPathError", "prepare", "safe_open"]


class SubPathError(Exception):
    """What the kubelet reports for a subPath it refuses (``str()``).

    ``reason`` is the detail the kubelet only logs (the words of subpath_linux.go).
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class Refused(Exception):
    """A subpath_linux.go error; its text is what the kubelet logs."""


def _q(text: str) -> str:
    """Go's %q for a path."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _errno(e: OSError) -> str:
    """Go's text for a syscall.Errno (lower-case)."""
    return os.strerror(e.errno).lower() if e.errno else str(e)


def _oserror(e: OSError) -> str:
    """Go's text for an *os.PathError."""
    return f"{e.filename}: {_errno(e)}" if e.filename else _errno(e)


def within(path: str, base: str) -> bool:
    """mount.PathWithinBase: lexically, path is base or below it."""
    rel = posixpath.relpath(path, base)
    return rel != ".." and not rel.startswith("../")


def eval_symlinks(path: str) -> str:
    """filepath.EvalSymlinks: every link resolved; any missing component is an error."""
    try:
        return os.path.realpath(path, strict=True)
    except OSError as e:
        raise Refused(f"error resolving symlinks in {_q(path)}: lstat {_oserror(e)}") from None


def _segments(path: str, base: str) -> list[str]:
    rel = posixpath.relpath(path, base)
    return [] if rel == "." else rel.split("/")


def safe_open(path: str, base: str) -> int:
    """doSafeOpen: an O_PATH fd of `path` (resolved, inside resolved `base`), no link followed."""
    path, base = posixpath.normpath(path), posixpath.normpath(base)
    try:
        parent = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise Refused(f"cannot open directory {base}: {_errno(e)}") from None
    current = base
    try:
        for seg in _segments(path, base):
            current = posixpath.join(current, seg)
            if not within(current, base):
                raise Refused(f"path {current} is outside of allowed base {base}")
            try:
                child = os.open(seg, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except OSError as e:
                raise Refused(f"cannot open {current}: {_errno(e)}") from None
            os.close(parent)
            parent = child
            if stat.S_ISLNK(os.fstat(parent).st_mode):
                raise Refused(f"unexpected symlink found {current}")
    except BaseException:
        os.close(parent)
        raise
    return parent


def _existing_prefix(base: str, pathname: str) -> tuple[str, list[str]]:
    """findExistingPrefix: open each component *following* links until one is missing."""
    dirs = _segments(pathname, base)
    fd = os.open(base, os.O_RDONLY | os.O_CLOEXEC)
    current = base
    try:
        for i, name in enumerate(dirs):
            try:
                child = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return current, dirs[i:]
            os.close(fd)
            fd = child
            current = posixpath.join(current, name)
    finally:
        os.close(fd)
    return pathname, []


def safe_make_dir(sub_path: str, base: str, mode: int) -> None:
    """SafeMakeDir + doSafeMakeDir: create base/sub_path without leaving the volume."""
    real_base = eval_symlinks(base)
    pathname = posixpath.normpath(posixpath.join(real_base, sub_path))
    if not within(pathname, real_base):
        raise Refused(f"path {pathname} is outside of allowed base {real_base}")
    try:
        st = os.stat(pathname)
    except OSError:
        pass  # any error: look for the existing prefix
    else:
        if stat.S_ISDIR(st.st_mode):
            return  # already there (outside the volume or not: no race-proof check, as upstream)
        raise Refused(f"mkdir {pathname}: not a directory")
    try:
        existing, to_create = _existing_prefix(real_base, pathname)
    except OSError as e:
        raise Refused(f"error opening directory {pathname}: {_oserror(e)}") from None
    full_existing = eval_symlinks(existing)
    if not within(full_existing, real_base):
        raise Refused(f"path {full_existing} is outside of allowed base {real_base}")
    parent = safe_open(full_existing, real_base)
    current = full_existing
    try:
        for name in to_create:
            current = posixpath.join(current, name)
            try:
                os.mkdir(name, mode & 0o777, dir_fd=parent)
            except OSError as e:
                raise Refused(f"cannot create directory {current}: {_errno(e)}") from None
            try:
                child = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except OSError as e:
                raise Refused(f"cannot open {current}: {_errno(e)}") from None
            os.close(parent)
            parent = child
            # mkdirat's mode went through the umask; the kubelet sets the volume root's bits.
            os.fchmod(parent, mode & 0o7777)
    finally:
        os.close(parent)


def _path_exists(path: str) -> bool | None:
    """hostutil.PathExists (os.Stat, links followed): None when it cannot tell."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    return True


def resolve(volume_path: str, path: str) -> tuple[str, str]:
    """doBindSubPath up to the open: (resolved volume, resolved subPath relative to it)."""
    real_volume = eval_symlinks(volume_path)
    real_path = eval_symlinks(path)
    if not within(real_path, real_volume):
        raise Refused(f"subpath {_q(real_path)} not within volume path {_q(real_volume)}")
    try:
        os.close(safe_open(real_path, real_volume))
    except Refused as e:
        raise Refused(f"error opening subpath {real_path}: {e}") from None
    return real_volume, posixpath.relpath(real_path, real_volume)


def prepare(volume_path: str, sub_path: str, mount_name: str, container: str) -> tuple[str, str]:
    """makeMounts for one subPath: create it if missing, resolve it, check it stays inside.

    Returns (resolved volume directory, resolved subPath relative to it) for the shim to open
    with :func:`safe_open`. Raises SubPathError with the kubelet's words.
    """
    if sub_path.startswith("/"):
        raise SubPathError(f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise SubPathError(f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    host_path = posixpath.normpath(posixpath.join(volume_path, sub_path))
    if _path_exists(host_path) is False:
        try:
            safe_make_dir(sub_path, volume_path, os.stat(volume_path).st_mode)
        except (Refused, OSError) as e:
            raise SubPathError(
                f"failed to create subPath directory for volumeMount {_q(mount_name)} "
                f"of container {_q(container)}",
                str(e),
            ) from None
    try:
        return resolve(volume_path, host_path)
    except (Refused, OSError) as e:
        raise SubPathError(
            f"failed to prepare subPath for volumeMount {_q(mount_name)} of container "
            f"{_q(container)}",
            str(e),
        ) from None

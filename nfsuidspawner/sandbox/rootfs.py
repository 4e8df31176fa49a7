"""The sandbox shim's container root: a tmpfs root with the host's system, the volumes, /etc, /dev.

Imported by :mod:`.shim` inside the container's new mount namespace (stdlib only, and importable
without the package: the shim runs as a script and imports this file from beside it; like the
shim, it keeps to the imports every container start can afford).
:func:`build_root` mounts a tmpfs at the config's rootfs with read-only binds of the host's
system directories and the Python in use, an /etc of the image's users plus a few host files, a
private /dev, /proc, the docker-stacks stand-ins (start.sh, sudo's sudoers, jovyan's home) when
the image is one, and the volumes at their mountPaths: each source opened without following
links (a subPath re-checked with :func:`.subpath.safe_open`) and bound through its file
descriptor. :func:`pivot_root` then makes that root the mount namespace's ``/``.
"""

from __future__ import annotations

import ctypes
import os
import stat

if __package__:
    from . import subpath
else:  # imported by the shim run as a script, with subpath.py beside it
    import subpath

Obj = dict

libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


# Host /etc content every container root gets (copied, or bound read-only for directories).
ETC_COPY = [
    "resolv.conf", "host.conf", "login.defs", "ld.so.cache", "ld.so.conf", "localtime",
    "timezone", "bash.bashrc", "profile", "inputrc", "mime.types", "shells", "adduser.conf",
    "sudo.conf",
]  # fmt: skip
ETC_BIND = [
    "alternatives", "ssl", "ca-certificates", "ld.so.conf.d", "profile.d", "skel", "terminfo",
    "default", "security", "pam.d",
]  # fmt: skip
DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]


class StartError(Exception):
    """The container could not be started (reported as reason StartError, exit code 128)."""


def check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        libc.mount(
            src.encode() if src else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {src} on {target}",
    )


def bind(src: str, target: str, readonly: bool) -> None:
    mount(src, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def secure_join(root: str, path: str) -> str:
    """root + path with symlinks in path resolved inside root (like a chroot would)."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        full = os.path.join(root, *done, part)
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                raise StartError(f"too many symlinks resolving {path}")
            link = os.readlink(full)
            if link.startswith("/"):
                done = []
            todo = [p for p in link.split("/") if p] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


def _mkdirs(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def _copy(src: str, dst: str, mode: int | None = None) -> None:
    """Copy a file's contents, with its own mode unless `mode` says otherwise."""
    with open(src, "rb") as f:
        content = f.read()
    with open(dst, "wb") as f:
        f.write(content)
    os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode) if mode is None else mode)


def _write(path: str, content: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    with open(path, "w") as f:
        f.write(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _build_etc(cfg: Obj, root: str) -> None:
    etc = os.path.join(root, "etc")
    _mkdirs(etc)
    for name in ETC_COPY:
        src = os.path.join("/etc", name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(etc, name))
        elif os.path.isfile(src):
            _copy(src, os.path.join(etc, name))
    for name in ETC_BIND:
        src = os.path.join("/etc", name)
        if os.path.isdir(src) and not os.path.islink(src):
            _mkdirs(os.path.join(etc, name))
            bind(src, os.path.join(etc, name), readonly=True)
    # docker-stacks images make /etc/passwd group-writable (start.sh appends to it as non-root).
    _write(os.path.join(etc, "passwd"), cfg["passwd"], 0o664 if cfg["docker_stacks"] else 0o644)
    _write(os.path.join(etc, "group"), cfg["group"])
    shadow_gid = 42 if cfg["docker_stacks"] else 0
    shadow = "".join(
        f"{ln.split(':')[0]}:*:20000:0:99999:7:::\n" for ln in cfg["passwd"].splitlines()
    )
    gshadow = "".join(f"{ln.split(':')[0]}:*::\n" for ln in cfg["group"].splitlines())
    _write(os.path.join(etc, "shadow"), shadow, 0o640, gid=shadow_gid)
    _write(os.path.join(etc, "gshadow"), gshadow, 0o640, gid=shadow_gid)
    _write(
        os.path.join(etc, "nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\ngshadow: files\nhosts: files dns\n",
    )
    _write(os.path.join(etc, "hostname"), cfg["hostname"] + "\n")
    _write(
        os.path.join(etc, "hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{cfg['pod_ip']}\t{cfg['hostname']}\n",
    )


def _build_dev(root: str) -> None:
    dev = os.path.join(root, "dev")
    _mkdirs(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        open(target, "w").close()
        bind(os.path.join("/dev", name), target, readonly=False)
    _mkdirs(os.path.join(dev, "pts"))
    mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=0620,gid=5")  # fmt: skip
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    _mkdirs(os.path.join(dev, "shm"))
    mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, os.path.join(dev, name))


def _build_docker_stacks(cfg: Obj, root: str) -> None:
    """/usr/local/bin of a docker-stacks image (stand-ins), sudo's sudoers and jovyan's home."""
    bindir = os.path.join(root, "usr/local/bin")
    mount("tmpfs", bindir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    src = os.path.join(cfg["images_dir"], "docker-stacks")
    for name in ("start.sh", "start-notebook.py", "start-notebook.sh", "start-singleuser.py",
                 "start-singleuser.sh", "run-hooks.sh"):  # fmt: skip
        _copy(os.path.join(src, name), os.path.join(bindir, name), 0o755)
    for d in ("start-notebook.d", "before-notebook.d"):
        _mkdirs(os.path.join(bindir, d))
    hook = "10activate-conda-env.sh"
    _copy(os.path.join(src, hook), os.path.join(bindir, "before-notebook.d", hook), 0o644)
    # conda is a Python program: the base interpreter (a venv's would ignore the user site).
    with open(os.path.join(src, "conda")) as f:
        conda = f.read().split("\n", 1)[1]
    _write(os.path.join(bindir, "conda"), f"#!{cfg['base_python']}\n{conda}", 0o755)
    with open(os.path.join(src, "sudoers")) as f:
        _write(os.path.join(root, "etc/sudoers"), f.read(), 0o440)
    _mkdirs(os.path.join(root, "etc/sudoers.d"))
    home = os.path.join(root, "home/jovyan")
    _mkdirs(home)
    _write(os.path.join(home, ".bashrc"), "# jovyan's .bashrc (sandbox image stand-in)\n")
    for p in (home, os.path.join(home, ".bashrc")):
        os.chown(p, 1000, 100)
    os.chmod(home, 0o750)


def _safe_source(m: Obj) -> int:
    """O_PATH fd of the volume, or of its resolved subPath opened beneath it following no link."""
    try:
        if not m["sub_path"]:
            return os.open(m["volume_dir"], os.O_PATH | os.O_CLOEXEC)
        return subpath.safe_open(os.path.join(m["volume_dir"], m["sub_path"]), m["volume_dir"])
    except (subpath.Refused, OSError) as e:
        raise StartError(f"mount {m['target']}: {e}") from None


def build_root(cfg: Obj) -> None:
    root = cfg["rootfs"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "opt"):
        src = "/" + name
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(root, name))
        elif os.path.isdir(src):
            _mkdirs(os.path.join(root, name))
            bind(src, os.path.join(root, name), readonly=True)
    # The Python in use (venv and base); parents are created 0755 so that /root is traversable.
    for p in cfg["python_paths"]:
        target = os.path.join(root, p.lstrip("/"))
        if os.path.exists(target) or not os.path.isdir(p):
            continue
        _mkdirs(target)
        bind(p, target, readonly=True)
    _build_etc(cfg, root)
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("home", 0o755), ("run", 0o755)):
        _mkdirs(os.path.join(root, d))
        os.chmod(os.path.join(root, d), mode)
    if not os.path.exists(os.path.join(root, "root")):
        os.mkdir(os.path.join(root, "root"), 0o700)
    _mkdirs(os.path.join(root, "proc"))
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _build_dev(root)
    if cfg["docker_stacks"]:
        _build_docker_stacks(cfg, root)

    # Volumes: parents before children.
    for m in sorted(cfg["mounts"], key=lambda m: len([p for p in m["target"].split("/") if p])):
        fd = _safe_source(m)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            target = secure_join(root, m["target"])
            try:
                if is_dir:
                    _mkdirs(target)
                else:
                    _mkdirs(os.path.dirname(target))
                    if not os.path.exists(target):
                        open(target, "w").close()
            except OSError as e:
                raise StartError(f"cannot create mount point {m['target']}: {e}") from None
            bind(f"/proc/self/fd/{fd}", target, m["readonly"])
        finally:
            os.close(fd)

    tlog = secure_join(root, cfg["termination_message_path"])
    _mkdirs(os.path.dirname(tlog))
    if not os.path.exists(tlog):
        open(tlog, "w").close()
    bind(cfg["termination_log"], tlog, readonly=False)

    if cfg["readonly_root"]:
        mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        if cfg["docker_stacks"]:
            bindir = os.path.join(root, "usr/local/bin")
            mount(None, bindir, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def pivot_root(root: str) -> None:
    os.chdir(root)
    nr = SYS_PIVOT_ROOT[os.uname().machine]
    check(libc.syscall(nr, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")

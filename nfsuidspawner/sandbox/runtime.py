"""The sandbox container runtime: one Kubernetes container as real processes on this machine.

Two halves live here:

* Kubelet side (imported): :func:`container_config` turns a pod, one of its containers and the
  host directories of its volumes into a JSON-able *config*; subPaths are created, resolved and
  checked the way the kubelet does (:mod:`.subpath`). Errors a kubelet reports as
  ``CreateContainerConfigError`` raise :class:`ContainerConfigError`.
* Shim side (``python runtime.py CONFIG.json``, stdlib only, no package imports): enters new
  PID, mount, UTS and IPC namespaces, builds a tmpfs container root with read-only binds of the
  host's system directories, the volumes at their mountPaths, ``pivot_root``\\s into it and runs
  the container's command through ``setpriv`` with the uid, gids, capabilities and no_new_privs
  of its securityContext. A small init (PID 1 of the new PID namespace) exits with the main
  process's code; when it dies the kernel kills everything left in the namespace, and the mounts
  die with their namespace. A stop signal reaches what a kubelet's reaches: the main process
  only; for docker-stacks images (entrypoint ``tini -g -- start.sh``) the init plays tini, with
  the container's uid, gids and capabilities, and signals the main process's group.

The one stand-in for pod networking (there are no network namespaces): every pod gets its own
127.x.y.z address, and a Jupyter server told to bind 0.0.0.0 (``JUPYTERHUB_SERVICE_URL`` host or
``--ip=0.0.0.0``) is told to bind the pod IP instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import select
import shutil
import signal
import stat
import sys
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

if __package__:
    from . import subpath
else:  # the shim: this file run as a script, with subpath.py beside it
    import subpath

Obj = dict[str, Any]

log = logging.getLogger(__name__)

IMAGES_DIR = Path(__file__).resolve().parent / "images"

# Exit code and reason a runtime reports when the container cannot be started at all.
START_ERROR_EXIT = 128

# containerd's default capability set for a container.
DEFAULT_CAPS = [
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]  # fmt: skip

DOCKER_STACKS_IMAGE = re.compile(
    r"^(?:(?:quay\.io|docker\.io)/)?jupyter/[a-z0-9._-]+(?::[\w.-]+)?(?:@sha256:[0-9a-f]+)?$"
)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerConfigError(Exception):
    """What a kubelet reports as waiting reason CreateContainerConfigError.

    ``reason`` is the detail behind it that a kubelet only logs (for subPaths).
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


# --------------------------------------------------------------------------- kubelet side


def is_docker_stacks(image: str) -> bool:
    """Jupyter docker-stacks images (quay.io/jupyter/*-notebook ...) get the start.sh stand-in."""
    return bool(DOCKER_STACKS_IMAGE.match(image))


def image_id(image: str) -> str:
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{image.split('@')[0].rsplit(':', 1)[0]}@sha256:{digest}"


def _sec(pod: Obj, container: Obj) -> Obj:
    """Effective securityContext: container fields over pod fields."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    merged = {k: psc[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot") if k in psc}
    merged.update({k: v for k, v in csc.items() if v is not None})
    return merged


def _image_users(docker_stacks: bool) -> tuple[str, str]:
    """The image's /etc/passwd and /etc/group."""
    name = "docker-stacks" if docker_stacks else "busybox"
    return (
        (IMAGES_DIR / name / "passwd").read_text(),
        (IMAGES_DIR / name / "group").read_text(),
    )


def _passwd_entry(passwd: str, uid: int) -> list[str] | None:
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2] == str(uid):
            return f
    return None


def _member_gids(group: str, user: str) -> list[int]:
    gids = []
    for line in group.splitlines():
        f = line.split(":")
        if len(f) >= 4 and user in f[3].split(","):
            gids.append(int(f[2]))
    return gids


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion; $$ escapes, unknown references stay as they are."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, text)


def _field_ref(pod: Obj, path: str, pod_ip: str) -> str:
    meta = pod.get("metadata") or {}
    if path == "metadata.name":
        return meta.get("name", "")
    if path == "metadata.namespace":
        return meta.get("namespace", "")
    if path == "metadata.uid":
        return meta.get("uid", "")
    if path in ("status.podIP", "status.hostIP"):
        return pod_ip
    if path == "spec.nodeName":
        return (pod.get("spec") or {}).get("nodeName", "")
    if path == "spec.serviceAccountName":
        return (pod.get("spec") or {}).get("serviceAccountName", "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


def rewrite_bind_host(value: str, pod_ip: str) -> str:
    """JUPYTERHUB_SERVICE_URL host 0.0.0.0 -> pod IP (the sandbox's stand-in for pod networking)."""
    parts = urlsplit(value)
    if parts.hostname != "0.0.0.0":
        return value
    netloc = pod_ip + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _rewrite_ip_args(args: list[str], pod_ip: str) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if a in ("--ip=0.0.0.0", "--ServerApp.ip=0.0.0.0"):
            a = a.split("=")[0] + "=" + pod_ip
        elif a == "0.0.0.0" and i > 0 and args[i - 1] in ("--ip", "--ServerApp.ip"):
            a = pod_ip
        out.append(a)
    return out


def container_config(
    pod: Obj,
    container: Obj,
    *,
    pod_ip: str,
    volumes: dict[str, str],
    rootfs: str,
    termination_log: str,
    start_error_file: str,
) -> Obj:
    """The shim's config for one container. `volumes` maps volume name -> host directory.

    Raises ContainerConfigError for what a kubelet refuses before creating the container.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    image = container.get("image") or ""
    docker_stacks = is_docker_stacks(image)
    passwd, group = _image_users(docker_stacks)
    sc = _sec(pod, container)

    # User: image default (docker-stacks: USER 1000, gid 100; others root), securityContext over it.
    uid = int(sc.get("runAsUser", 1000 if docker_stacks else 0))
    entry = _passwd_entry(passwd, uid)
    gid = int(sc.get("runAsGroup", int(entry[3]) if entry else 0))
    if sc.get("runAsNonRoot") and uid == 0:
        raise ContainerConfigError(
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{meta.get("name")}_{meta.get("namespace")}({meta.get("uid")})", '
            f"container: {container.get('name')})"
        )
    groups = {gid}
    if entry:
        groups.update(_member_gids(group, entry[0]))
    groups.update(int(g) for g in psc.get("supplementalGroups") or [])
    if psc.get("fsGroup") is not None:
        groups.add(int(psc["fsGroup"]))

    caps_spec = sc.get("capabilities") or {}
    drop = {c.upper().removeprefix("CAP_") for c in caps_spec.get("drop") or []}
    add = {c.upper().removeprefix("CAP_") for c in caps_spec.get("add") or []}
    if sc.get("privileged"):
        raise ContainerConfigError("privileged containers are not supported by the sandbox")
    caps = set() if "ALL" in drop else set(DEFAULT_CAPS) - drop
    caps |= add - {"ALL"}

    # Environment: image env, then HOSTNAME, then the container's env in order.
    if docker_stacks:
        venv_bin = os.path.join(sys.prefix, "bin")
        env = {
            "PATH": f"{venv_bin}:{SYSTEM_PATH}",
            "NB_USER": "jovyan", "NB_UID": "1000", "NB_GID": "100",
            "HOME": "/home/jovyan", "SHELL": "/bin/bash", "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "JUPYTER_PORT": "8888", "CONDA_DIR": sys.prefix,
        }  # fmt: skip
        entrypoint, cmd = ["start.sh"], ["start-notebook.py"]
        workdir = "/home/jovyan"
    else:
        env = {"PATH": SYSTEM_PATH}
        entrypoint, cmd, workdir = [], [], "/"
    env["HOSTNAME"] = meta.get("name", "")
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            value = expand(str(item.get("value", "")), env)
        elif "fieldRef" in item["valueFrom"]:
            value = _field_ref(pod, item["valueFrom"]["fieldRef"]["fieldPath"], pod_ip)
        else:
            raise ContainerConfigError(f"env {item['name']}: only value and fieldRef supported")
        env[item["name"]] = value
    if "HOME" not in env:
        env["HOME"] = entry[5] if entry else "/"
    if "JUPYTERHUB_SERVICE_URL" in env:
        env["JUPYTERHUB_SERVICE_URL"] = rewrite_bind_host(env["JUPYTERHUB_SERVICE_URL"], pod_ip)

    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [expand(a, env) for a in command] + [expand(a, env) for a in args or []]
    else:
        argv = entrypoint + ([expand(a, env) for a in args] if args is not None else cmd)
    if not argv:
        raise ContainerConfigError("no command specified")
    argv = _rewrite_ip_args(argv, pod_ip)

    mounts = []
    for vm in container.get("volumeMounts") or []:
        name = vm["name"]
        if name not in volumes:
            raise ContainerConfigError(f"volume {name!r} not found or not supported")
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            sub = expand(vm["subPathExpr"], env)
        source, resolved = volumes[name], ""
        if sub:
            try:
                source, resolved = subpath.prepare(
                    volumes[name], sub, name, container.get("name", "")
                )
            except subpath.SubPathError as e:
                log.warning("subPath %r of volume %r: %s", sub, name, e.reason)
                raise ContainerConfigError(str(e), e.reason) from None
        mounts.append(
            {
                "volume_dir": source,
                "sub_path": resolved,
                "target": vm["mountPath"],
                "readonly": bool(vm.get("readOnly")),
            }
        )

    python_paths = []
    for p in (sys.prefix, sys.base_prefix):
        for q in (p, os.path.realpath(p)):
            if q not in python_paths:
                python_paths.append(q)

    return {
        "name": container.get("name"),
        "hostname": meta.get("name", "sandbox")[:63],
        "pod_ip": pod_ip,
        "rootfs": rootfs,
        "docker_stacks": docker_stacks,
        # The image's PID 1 is `tini -g -- start.sh`, unless `command` replaces the entrypoint.
        "tini": docker_stacks and not command,
        "images_dir": str(IMAGES_DIR),
        "python_paths": python_paths,
        "base_python": os.path.join(
            sys.base_prefix, "bin", "python{}.{}".format(*sys.version_info)
        ),
        "passwd": passwd,
        "group": group,
        "mounts": mounts,
        "termination_log": termination_log,
        "termination_message_path": container.get("terminationMessagePath")
        or "/dev/termination-log",
        "start_error_file": start_error_file,
        "argv": argv,
        "env": env,
        "workdir": container.get("workingDir") or workdir,
        "uid": uid,
        "gid": gid,
        "groups": sorted(groups),
        "caps": sorted(caps),
        "no_new_privs": sc.get("allowPrivilegeEscalation") is False,
        "readonly_root": bool(sc.get("readOnlyRootFilesystem")),
    }


# --------------------------------------------------------------------------- shim side

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Capability names in the order of their numbers (linux/capability.h).
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip

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


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            src.encode() if src else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {src} on {target}",
    )


def _bind(src: str, target: str, readonly: bool) -> None:
    _mount(src, target, None, MS_BIND | MS_REC)
    if readonly:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _secure_join(root: str, path: str) -> str:
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
            shutil.copy2(src, os.path.join(etc, name))
    for name in ETC_BIND:
        src = os.path.join("/etc", name)
        if os.path.isdir(src) and not os.path.islink(src):
            _mkdirs(os.path.join(etc, name))
            _bind(src, os.path.join(etc, name), readonly=True)
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
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        open(target, "w").close()
        _bind(os.path.join("/dev", name), target, readonly=False)
    _mkdirs(os.path.join(dev, "pts"))
    _mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=0620,gid=5")  # fmt: skip
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    _mkdirs(os.path.join(dev, "shm"))
    _mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, os.path.join(dev, name))


def _build_docker_stacks(cfg: Obj, root: str) -> None:
    """/usr/local/bin of a docker-stacks image (stand-ins), sudo's sudoers and jovyan's home."""
    bindir = os.path.join(root, "usr/local/bin")
    _mount("tmpfs", bindir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    src = os.path.join(cfg["images_dir"], "docker-stacks")
    for name in ("start.sh", "start-notebook.py", "start-notebook.sh", "start-singleuser.py",
                 "start-singleuser.sh", "run-hooks.sh"):  # fmt: skip
        shutil.copyfile(os.path.join(src, name), os.path.join(bindir, name))
        os.chmod(os.path.join(bindir, name), 0o755)
    for d in ("start-notebook.d", "before-notebook.d"):
        _mkdirs(os.path.join(bindir, d))
    hook = "10activate-conda-env.sh"
    shutil.copyfile(os.path.join(src, hook), os.path.join(bindir, "before-notebook.d", hook))
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
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "opt"):
        src = "/" + name
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(root, name))
        elif os.path.isdir(src):
            _mkdirs(os.path.join(root, name))
            _bind(src, os.path.join(root, name), readonly=True)
    # The Python in use (venv and base); parents are created 0755 so that /root is traversable.
    for p in cfg["python_paths"]:
        target = os.path.join(root, p.lstrip("/"))
        if os.path.exists(target) or not os.path.isdir(p):
            continue
        _mkdirs(target)
        _bind(p, target, readonly=True)
    _build_etc(cfg, root)
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("home", 0o755), ("run", 0o755)):
        _mkdirs(os.path.join(root, d))
        os.chmod(os.path.join(root, d), mode)
    if not os.path.exists(os.path.join(root, "root")):
        os.mkdir(os.path.join(root, "root"), 0o700)
    _mkdirs(os.path.join(root, "proc"))
    _mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _build_dev(root)
    if cfg["docker_stacks"]:
        _build_docker_stacks(cfg, root)

    # Volumes: parents before children.
    for m in sorted(cfg["mounts"], key=lambda m: len([p for p in m["target"].split("/") if p])):
        fd = _safe_source(m)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            target = _secure_join(root, m["target"])
            try:
                if is_dir:
                    _mkdirs(target)
                else:
                    _mkdirs(os.path.dirname(target))
                    if not os.path.exists(target):
                        open(target, "w").close()
            except OSError as e:
                raise StartError(f"cannot create mount point {m['target']}: {e}") from None
            _bind(f"/proc/self/fd/{fd}", target, m["readonly"])
        finally:
            os.close(fd)

    tlog = _secure_join(root, cfg["termination_message_path"])
    _mkdirs(os.path.dirname(tlog))
    if not os.path.exists(tlog):
        open(tlog, "w").close()
    _bind(cfg["termination_log"], tlog, readonly=False)

    if cfg["readonly_root"]:
        _mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        if cfg["docker_stacks"]:
            bindir = os.path.join(root, "usr/local/bin")
            _mount(None, bindir, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _pivot(root: str) -> None:
    os.chdir(root)
    nr = SYS_PIVOT_ROOT[os.uname().machine]
    _check(_libc.syscall(nr, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def _setpriv_argv(cfg: Obj) -> list[str]:
    caps = ",".join(["-all"] + ["+" + c.lower() for c in cfg["caps"]])
    argv = [
        "/usr/bin/setpriv",
        f"--reuid={cfg['uid']}",
        f"--regid={cfg['gid']}",
        "--groups=" + ",".join(str(g) for g in cfg["groups"]),
        f"--bounding-set={caps}",
        "--inh-caps=-all",
        "--ambient-caps=-all",
    ]
    if cfg["no_new_privs"]:
        argv.append("--no-new-privs")
    return [*argv, "--"]


def _which(cmd: str, path: str) -> str | None:
    if "/" in cmd:
        return cmd if os.path.exists(cmd) else None
    for d in path.split(":"):
        p = os.path.join(d or ".", cmd)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


_start_error_fd: int | None = None


def _fail_start(cfg: Obj, message: str) -> None:
    """Report why the container could not start (the file is opened before pivot_root)."""
    try:
        fd = _start_error_fd
        if fd is None:
            fd = os.open(cfg["start_error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, message.encode())
    except OSError:
        pass
    print(f"sandbox runtime: {message}", file=sys.stderr, flush=True)
    os._exit(START_ERROR_EXIT)


def _init(cfg: Obj, parent_alive: int) -> None:
    """PID 1 of the container's PID namespace."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(1)  # the shim died before we set PDEATHSIG
    os.umask(0o022)
    global _start_error_fd
    _start_error_fd = os.open(
        cfg["start_error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
    )
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        name = cfg["hostname"].encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")
        build_root(cfg)
        _pivot(cfg["rootfs"])
    except StartError as e:
        _fail_start(cfg, str(e))
    except Exception as e:
        _fail_start(cfg, f"failed to create container: {e}")

    env = cfg["env"]
    exe = _which(cfg["argv"][0], env.get("PATH", SYSTEM_PATH))
    if exe is None:
        _fail_start(cfg, f'exec: "{cfg["argv"][0]}": executable file not found in $PATH')
    try:
        os.chdir(_secure_join("/", cfg["workdir"]))
    except OSError as e:
        _fail_start(cfg, f"chdir to cwd ({cfg['workdir']!r}) set in config.json failed: {e}")

    main = os.fork()
    if main == 0:
        try:
            os.setsid()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                        signal.SIGUSR2, signal.SIGQUIT, signal.SIGCHLD):  # fmt: skip
                signal.signal(sig, signal.SIG_DFL)
            os.execve(_setpriv_argv(cfg)[0], _setpriv_argv(cfg) + cfg["argv"], env)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(START_ERROR_EXIT)

    if cfg["tini"]:
        _forward_signals(-main)  # tini -g: the group of its child (which setsid made a leader)
        _become_tini(cfg, parent_alive)
    else:
        _forward_signals(main)  # a kubelet signals the container's main process only
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == main:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            with contextlib.suppress(OSError):  # the kernel kills the rest when we exit
                os.kill(-1, signal.SIGKILL)
            os._exit(code)


def _capset(names: list[str]) -> None:
    """Keep only `names` in this process's permitted and effective capabilities."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(f, ctypes.c_uint32) for f in ("effective", "permitted", "inheritable")]

    bits = sum(1 << CAP_NAMES.index(n) for n in names if n in CAP_NAMES)
    low, high = bits & 0xFFFFFFFF, bits >> 32
    data = (Data * 2)(Data(low, low, 0), Data(high, high, 0))
    _check(_libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")  # version 3


def _become_tini(cfg: Obj, parent_alive: int) -> None:
    """Take the credentials tini has in the image: the container's uid, gids and capabilities.

    Its signals then reach only what it may signal: without CAP_KILL, a root tini cannot signal
    the user's lab (only sudo, which is root too).
    """
    os.setgroups(cfg["groups"])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])  # a non-root uid drops every capability
    if cfg["uid"] == 0:
        _capset(cfg["caps"])
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a credential change clears it
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(1)


FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
)


def _forward_signals(target: int) -> None:
    """Pass the signals a container gets on to `target` (a pid, or a process group if < 0)."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)


def main(argv: list[str]) -> None:
    with open(argv[1]) as f:
        cfg = json.load(f)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != cfg["parent_pid"]:
        sys.exit(1)  # the kubelet died while we started
    if _libc.unshare(CLONE_NEWPID) != 0:
        _fail_start(cfg, f"unshare(CLONE_NEWPID): {os.strerror(ctypes.get_errno())}")
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        try:
            _init(cfg, alive_r)
        finally:
            os._exit(START_ERROR_EXIT)
    os.close(alive_r)

    _forward_signals(child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            sys.exit(1)
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("sandbox runtime: must run as root")
    main(sys.argv)

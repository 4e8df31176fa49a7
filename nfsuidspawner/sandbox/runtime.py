"""The kubelet side of the sandbox container runtime: a pod's container -> the shim's config.

:func:`container_config` turns a pod, one of its containers and the host directories of its
volumes into a JSON-able *config* for the shim (:mod:`.shim`, run as ``python shim.py
CONFIG.json``): the image's users and environment, the container's command with Kubernetes
``$(VAR)`` expansion, env values and ``fieldRef``\\s, the effective securityContext (uid, gids,
capabilities, no_new_privs, read-only root) and the volume mounts. subPaths are created, resolved
and checked the way the kubelet does (:mod:`.subpath`). Errors a kubelet reports as
``CreateContainerConfigError`` raise :class:`ContainerConfigError`. No processes are started
here; the only I/O is reading the image stand-ins' /etc/passwd and /etc/group and preparing
subPaths.

The one stand-in for pod networking (there are no network namespaces): every pod gets its own
127.x.y.z address, and a Jupyter server told to bind 0.0.0.0 (``JUPYTERHUB_SERVICE_URL`` host or
``--ip=0.0.0.0``) is told to bind the pod IP instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import subpath
from .shim import START_ERROR_EXIT, SYSTEM_PATH

__all__ = [
    "START_ERROR_EXIT",
    "ContainerConfigError",
    "container_config",
    "expand",
    "image_id",
    "is_docker_stacks",
    "rewrite_bind_host",
]

Obj = dict[str, Any]

log = logging.getLogger(__name__)

IMAGES_DIR = Path(__file__).resolve().parent / "images"

# containerd's default capability set for a container.
DEFAULT_CAPS = [
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]  # fmt: skip

DOCKER_STACKS_IMAGE = re.compile(
    r"^(?:(?:quay\.io|docker\.io)/)?jupyter/[a-z0-9._-]+(?::[\w.-]+)?(?:@sha256:[0-9a-f]+)?$"
)


class ContainerConfigError(Exception):
    """What a kubelet reports as waiting reason CreateContainerConfigError.

    ``reason`` is the detail behind it that a kubelet only logs (for subPaths).
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


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

"""Pure builders of the pieces nfsuidspawner adds to a KubeSpawner pod.

Nothing here does I/O or knows about the spawner: each function takes plain
values and returns Kubernetes manifests as camelCase dicts. :func:`inject` adds
them to the `V1Pod` that KubeSpawner built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kubernetes_asyncio.client import models
from kubespawner.utils import get_k8s_model

from .errors import NFSUIDError
from .identity import Identity
from .script import GROUPS_HOOK_NAME, HOOK_NAME, identity_script

SHARE_VOLUME = "nfsuid-share"
RUN_VOLUME = "nfsuid-run"
HOME_VOLUME = "nfsuid-home"
INIT_CONTAINER = "nfsuid-identity"
NOTEBOOK_CONTAINER = "notebook"

# Where the docker-stacks start.sh sources hooks as root: before it creates the
# user, and before it switches to the user.
START_HOOK_DIR = "/usr/local/bin/start-notebook.d"
BEFORE_HOOK_DIR = "/usr/local/bin/before-notebook.d"

# Environment that decides who the lab runs as, or hands it root. The spawner
# owns these; see NFSUIDSpawner.unsafe_allow_identity_overrides.
IDENTITY_ENV = (
    "NB_USER",
    "NB_UID",
    "NB_GID",
    "NB_GROUP",
    "GRANT_SUDO",
    "CHOWN_HOME",
    "CHOWN_HOME_OPTS",
    "CHOWN_EXTRA",
    "CHOWN_EXTRA_OPTS",
)

RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}
# What start.sh needs, as root, to rewrite /etc/passwd and switch to NB_UID, and KILL
# for sudo, which stays on as the lab's root parent and relays SIGTERM to it (the
# kubelet signals only PID 1). Without DAC_OVERRIDE or DAC_READ_SEARCH even this root
# cannot read a 0700 home it does not own, and the final process keeps no capability.
ROOT_SWITCH_CAPABILITIES = ["SETUID", "SETGID", "CHOWN", "KILL"]

# containerd 2.x sets this to 0 in every pod, so that any uid can bind a port below
# 1024: all an NFS export's `secure` option asks of an AUTH_SYS client, which may then
# claim any uid. 1024 gives privileged ports back to privileged processes only.
PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"
PRIVILEGED_PORTS = 1024
# The pod securityContext fields that decide who the lab is. The spawner owns them.
IDENTITY_POD_FIELDS = ("runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups")


@dataclass(frozen=True)
class Layout:
    """Where the user's directory is, on the share and in the lab."""

    user: str
    home_dir: str
    share_mount_path: str
    nb_user: str
    home_symlink: bool = True
    extra_share_mounts: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @property
    def share_path(self) -> str:
        """The user's directory as the lab sees it: the share's own path."""
        return str(PurePosixPath(self.share_mount_path) / self.home_dir)

    @property
    def home(self) -> str:
        return f"/home/{self.nb_user}"


def check_extra_share_mount(mount: dict[str, Any]) -> None:
    """An extra mount names a subdirectory of the share: never the root, never outside it."""
    sub_path = mount.get("subPath")
    mount_path = mount.get("mountPath")
    if set(mount) - {"subPath", "mountPath"}:
        raise ValueError(
            f"extra_share_mounts entry {mount!r} has keys other than subPath and mountPath"
        )
    if not isinstance(sub_path, str) or not isinstance(mount_path, str):
        raise ValueError(f"extra_share_mounts entry {mount!r} needs subPath and mountPath strings")
    parts = PurePosixPath(sub_path).parts
    if not parts or parts == (".",) or sub_path.startswith("/") or ".." in parts:
        raise ValueError(
            f"extra_share_mounts entry {mount!r}: subPath must be a relative subdirectory"
            " of the share, such as 'datasets'; the share root is never mounted in a lab"
        )
    if not mount_path.startswith("/"):
        raise ValueError(f"extra_share_mounts entry {mount!r}: mountPath must be absolute")


def share_volume(storage: str, server: str, export_path: str, claim_name: str) -> dict:
    if storage == "inline":
        return {"name": SHARE_VOLUME, "nfs": {"server": server, "path": export_path}}
    return {"name": SHARE_VOLUME, "persistentVolumeClaim": {"claimName": claim_name}}


_MANAGED = {"app.kubernetes.io/managed-by": "nfsuidspawner"}


def persistent_volume(
    name: str,
    server: str,
    export_path: str,
    mount_options: list[str],
    capacity: str,
    claim_namespace: str,
    claim_name: str,
) -> dict:
    """The NFS PersistentVolume of the `ensure-pv` storage way, reserved for its claim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": dict(_MANAGED)},
        "spec": {
            "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": list(mount_options),
            "nfs": {"server": server, "path": export_path},
            "claimRef": {"namespace": claim_namespace, "name": claim_name},
        },
    }


def persistent_volume_claim(name: str, namespace: str, volume_name: str, capacity: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": volume_name,
            "resources": {"requests": {"storage": capacity}},
        },
    }


def _hardened(run_as: Identity) -> dict:
    return {
        "runAsUser": run_as.uid,
        "runAsGroup": run_as.gid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": dict(RUNTIME_DEFAULT_SECCOMP),
    }


def identity_init_container(
    layout: Layout, image: str, min_uid: int, min_gid: int, identity: Identity | None
) -> dict:
    """The initContainer that checks the directory and, without an identity, finds it.

    It mounts the share root read-only and walks the path to the user's directory
    without following links, before any container mounts that directory: a kubelet
    follows links in a subPath, and creates a missing subPath on the share. Without
    a known identity it runs as nobody, which needs only search permission on the way.
    With one it runs as that user and refuses a directory the user does not own.
    """
    env = {
        "NFSUID_USER": layout.user,
        "NFSUID_SHARE": "/nfsuid/share",
        "NFSUID_HOME_DIR": layout.home_dir,
        "NFSUID_MOUNT_PATH": layout.share_mount_path,
        "NFSUID_PATH": layout.share_path,
        "NFSUID_MIN_UID": str(min_uid),
        "NFSUID_MIN_GID": str(min_gid),
    }
    mounts = [{"name": SHARE_VOLUME, "mountPath": "/nfsuid/share", "readOnly": True}]
    if identity is None:
        env |= {
            "NFSUID_RUN": "/nfsuid/run",
            "NFSUID_NB_USER": layout.nb_user,
            "NFSUID_NB_GROUP": layout.nb_user,
        }
        mounts.append({"name": RUN_VOLUME, "mountPath": "/nfsuid/run"})
    else:
        env["NFSUID_EXPECT_UID"] = str(identity.uid)
    if layout.home_symlink:
        env["NFSUID_HOME_LINK"] = f"/nfsuid/home/{layout.nb_user}"
    else:
        env["NFSUID_HOME_MOUNTPOINT"] = f"/nfsuid/home/{layout.nb_user}"
    mounts.append({"name": HOME_VOLUME, "mountPath": "/nfsuid/home"})
    security = _hardened(identity or Identity(65534, 65534))
    security["readOnlyRootFilesystem"] = True
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "command": ["sh", "-c", identity_script()],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": mounts,
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }


def lab_volumes(share: dict, identity: Identity | None) -> list[dict]:
    volumes = [share, {"name": HOME_VOLUME, "emptyDir": {}}]
    if identity is None:
        volumes.append({"name": RUN_VOLUME, "emptyDir": {}})
    return volumes


def lab_volume_mounts(layout: Layout, identity: Identity | None) -> list[dict]:
    """The user's directory, /home, the identity hook and the extra read-only mounts.

    Every mount of the share has a subPath: the share root is never in the lab. /home
    holds only what the initContainer made (the link, or the mount point) and is
    read-only, so that nothing the user writes there outlives their lab.
    """
    user_dir = layout.share_path if layout.home_symlink else layout.home
    mounts = [
        {"name": HOME_VOLUME, "mountPath": "/home", "readOnly": True},
        {"name": SHARE_VOLUME, "subPath": layout.home_dir, "mountPath": user_dir},
    ]
    if identity is None:
        mounts += [
            {
                "name": RUN_VOLUME,
                "subPath": HOOK_NAME,
                "mountPath": f"{START_HOOK_DIR}/{HOOK_NAME}",
                "readOnly": True,
            },
            {
                "name": RUN_VOLUME,
                "subPath": GROUPS_HOOK_NAME,
                "mountPath": f"{BEFORE_HOOK_DIR}/{GROUPS_HOOK_NAME}",
                "readOnly": True,
            },
        ]
    for extra in layout.extra_share_mounts:
        check_extra_share_mount(extra)
        if any(PurePosixPath(extra["mountPath"]).is_relative_to(p) for p in ("/home", user_dir)):
            raise NFSUIDError(
                f"nfsuid: user {layout.user}: extra_share_mounts puts {extra['subPath']} at"
                f" {extra['mountPath']}, inside /home or the user's directory, where the user"
                " could turn the mount point into a link. Fix: mount it beside, such as"
                f" {layout.share_mount_path}/{extra['subPath']}"
            )
        mounts.append(
            {
                "name": SHARE_VOLUME,
                "subPath": extra["subPath"],
                "mountPath": extra["mountPath"],
                "readOnly": True,
            }
        )
    return mounts


def lab_env(layout: Layout, identity: Identity | None) -> dict[str, str]:
    """NB_* for docker-stacks images. Without an identity the start hook exports them.

    Without an identity the container starts as root, and start.sh's root phase runs
    image code (hooks, conda) with HOME. /root is the one home the user never writes;
    start.sh's sudo --set-home gives the lab the user's own.
    """
    if identity is None:
        return {"HOME": "/root"}
    return {
        "NB_USER": layout.nb_user,
        "NB_UID": str(identity.uid),
        "NB_GID": str(identity.gid),
        "NB_GROUP": layout.nb_user,
        "HOME": layout.home,
    }


def lab_security_context(identity: Identity | None) -> dict:
    """Run as the user from the first instruction, or as a root that can only switch users."""
    if identity is not None:
        return _hardened(identity)
    return {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": list(ROOT_SWITCH_CAPABILITIES)},
        "seccompProfile": dict(RUNTIME_DEFAULT_SECCOMP),
    }


def as_dict(obj: Any) -> Any:
    """A kubernetes_asyncio model, or the mix of models and dicts KubeSpawner builds, as
    the camelCase dicts the API server receives."""
    if isinstance(obj, list | tuple):
        return [as_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {key: as_dict(value) for key, value in obj.items()}
    if hasattr(obj, "openapi_types"):
        return {
            obj.attribute_map[attr]: as_dict(value)
            for attr in obj.openapi_types
            if (value := getattr(obj, attr)) is not None
        }
    return obj


def pod_security_context(user: str, admin: dict | None) -> dict:
    """The admin's pod securityContext, with the identity fields and the port sysctl ours.

    Everything else an admin set survives: other sysctls, seLinuxOptions,
    appArmorProfile, a Localhost seccompProfile.
    """
    merged = {k: v for k, v in (admin or {}).items() if k not in IDENTITY_POD_FIELDS}
    # The kubelet takes sysctl names with "/" as well as "." for separators.
    for sysctl in merged.get("sysctls") or []:
        sysctl["name"] = str(sysctl.get("name")).replace("/", ".")
    if (merged.get("seccompProfile") or {}).get("type") != "Localhost":
        merged["seccompProfile"] = dict(RUNTIME_DEFAULT_SECCOMP)
    sysctls = [s for s in merged.get("sysctls") or [] if s.get("name") != PORT_SYSCTL]
    port_start = PRIVILEGED_PORTS
    for sysctl in merged.get("sysctls") or []:
        if sysctl.get("name") == PORT_SYSCTL:
            value = str(sysctl.get("value"))
            if not value.isdigit() or int(value) < PRIVILEGED_PORTS:
                raise NFSUIDError(
                    f"nfsuid: user {user}: the pod securityContext sets {PORT_SYSCTL}={value}"
                    " (c.KubeSpawner.pod_security_context or extra_pod_config), which lets any"
                    " uid in the lab bind a port below 1024 and speak NFS as any user. Fix:"
                    f" remove it, or set it to {PRIVILEGED_PORTS} or more"
                )
            port_start = int(value)
    merged["sysctls"] = [*sysctls, {"name": PORT_SYSCTL, "value": str(port_start)}]
    return merged


def without_bind_service(user: str, name: str, security: dict | None) -> dict:
    """A container's securityContext that keeps no NET_BIND_SERVICE capability."""
    security = dict(security or {})
    capabilities = dict(security.get("capabilities") or {})
    added = {c.upper().removeprefix("CAP_") for c in capabilities.get("add") or []}
    if added & {"NET_BIND_SERVICE", "ALL"}:
        raise NFSUIDError(
            f"nfsuid: user {user}: container {name!r} of the lab pod adds the"
            " NET_BIND_SERVICE capability, which can bind a port below 1024 and speak"
            " NFS as any user. Fix: remove it from the container's securityContext"
        )
    dropped = [c.upper().removeprefix("CAP_") for c in capabilities.get("drop") or []]
    if "ALL" not in dropped and "NET_BIND_SERVICE" not in dropped:
        capabilities["drop"] = [*(capabilities.get("drop") or []), "NET_BIND_SERVICE"]
        security["capabilities"] = capabilities
    return security


def forbidden_env(names: list[str]) -> list[str]:
    return [name for name in names if name in IDENTITY_ENV]


@dataclass(frozen=True)
class PodParts:
    """Everything nfsuidspawner adds to one pod."""

    volumes: list[dict]
    init_container: dict
    mounts: list[dict]
    env: dict[str, str]
    security_context: dict
    restart_policy: str


def pod_parts(
    layout: Layout,
    share: dict,
    identity: Identity | None,
    init_image: str,
    min_uid: int,
    min_gid: int,
) -> PodParts:
    return PodParts(
        volumes=lab_volumes(share, identity),
        init_container=identity_init_container(layout, init_image, min_uid, min_gid, identity),
        mounts=lab_volume_mounts(layout, identity),
        env=lab_env(layout, identity),
        security_context=lab_security_context(identity),
        # A lab that starts as root must never start twice in one pod: a restart would
        # run start.sh's root phase again, next to whatever the user left in the pod's
        # emptyDirs. The hub sees the server stop, and the next start gets a fresh pod.
        restart_policy="OnFailure" if identity else "Never",
    )


def _notebook(pod: models.V1Pod) -> models.V1Container:
    for container in pod.spec.containers:
        if container.name == NOTEBOOK_CONTAINER:
            return container
    raise NFSUIDError("nfsuid: the pod has no 'notebook' container to run the lab in")


def inject(pod: models.V1Pod, parts: PodParts, user: str) -> models.V1Pod:
    """Add `parts` to a KubeSpawner pod, replacing what decides identity.

    The notebook container's security context is replaced, and the pod's loses its
    identity fields: KubeSpawner's uid, gid, fs_gid and supplemental_gids (and the
    chart's singleuser.uid) must not decide who the lab runs as. fsGroup has no effect
    on NFS anyway. No other container keeps NET_BIND_SERVICE.
    """
    spec = pod.spec
    taken = {v.name for v in spec.volumes or []}
    clash = taken & {v["name"] for v in parts.volumes}
    if clash:
        raise NFSUIDError(f"nfsuid: the pod already has volumes named {sorted(clash)}")
    spec.volumes = (spec.volumes or []) + [get_k8s_model(models.V1Volume, v) for v in parts.volumes]
    notebook = _notebook(pod)
    for container in [*(spec.init_containers or []), *spec.containers]:
        if container is not notebook:
            container.security_context = without_bind_service(
                user, container.name, as_dict(container.security_context)
            )
    spec.init_containers = [get_k8s_model(models.V1Container, parts.init_container)] + (
        spec.init_containers or []
    )
    spec.security_context = pod_security_context(user, as_dict(spec.security_context))
    spec.restart_policy = parts.restart_policy

    notebook.volume_mounts = (notebook.volume_mounts or []) + [
        get_k8s_model(models.V1VolumeMount, m) for m in parts.mounts
    ]
    env = [e for e in notebook.env or [] if as_dict(e)["name"] not in parts.env]
    notebook.env = env + [models.V1EnvVar(name=k, value=v) for k, v in parts.env.items()]
    notebook.security_context = get_k8s_model(models.V1SecurityContext, parts.security_context)
    # start.sh cds into the home as root when started under /home; with
    # root_squash and a 0700 home that fails, so the lab starts in /.
    notebook.working_dir = "/"
    return pod

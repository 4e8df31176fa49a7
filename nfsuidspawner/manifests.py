"""Pure builders of the pieces nfsuidspawner adds to a KubeSpawner pod.

Nothing here does I/O or knows about the spawner: each function takes plain
values and returns Kubernetes manifests as camelCase dicts. :func:`inject` adds
them to the `V1Pod` that KubeSpawner built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .errors import NFSUIDError
from .groups import Group
from .identity import Identity
from .script import GROUP, GROUPS_HOOK_NAME, HOOK_NAME, JUPYTER_CONFIG_DIR, PASSWD, identity_script

SHARE_VOLUME = "nfsuid-share"
RUN_VOLUME = "nfsuid-run"
HOME_VOLUME = "nfsuid-home"
INIT_CONTAINER = "nfsuid-identity"
NOTEBOOK_CONTAINER = "notebook"

# Where the docker-stacks start.sh sources hooks as root: before it creates the
# user, and before it switches to the user.
START_HOOK_DIR = "/usr/local/bin/start-notebook.d"
BEFORE_HOOK_DIR = "/usr/local/bin/before-notebook.d"
# Where the lab finds the Jupyter config the initContainer writes (JUPYTER_CONFIG_PATH).
JUPYTER_CONFIG_PATH = "/etc/nfsuid/jupyter"

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


@dataclass(frozen=True)
class Layout:
    """Where the user's directory is, on the share and in the lab."""

    user: str
    home_dir: str
    share_mount_path: str
    nb_user: str
    home_symlink: bool = True
    extra_share_mounts: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    groups: tuple[Group, ...] = ()
    # The uid the directory must have when the identity is found in the pod (NSS's).
    expect_uid: int | None = None

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
    if set(mount) - {"subPath", "mountPath", "readOnly"}:
        raise ValueError(
            f"extra_share_mounts entry {mount!r} has keys other than subPath, mountPath"
            " and readOnly"
        )
    if not isinstance(mount.get("readOnly", True), bool):
        raise ValueError(f"extra_share_mounts entry {mount!r}: readOnly must be true or false")
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
    With one it runs as that user, refuses a directory the user does not own, and
    writes the image's passwd and group with the user's account and groups added.
    """
    env = {
        "NFSUID_USER": layout.user,
        "NFSUID_SHARE": "/nfsuid/share",
        "NFSUID_HOME_DIR": layout.home_dir,
        "NFSUID_MOUNT_PATH": layout.share_mount_path,
        "NFSUID_PATH": layout.share_path,
        "NFSUID_MIN_UID": str(min_uid),
        "NFSUID_MIN_GID": str(min_gid),
        "NFSUID_RUN": "/nfsuid/run",
        "NFSUID_NB_USER": layout.nb_user,
        "NFSUID_NB_GROUP": layout.nb_user,
        "NFSUID_HOME": layout.home,
    }
    if layout.groups:
        env["NFSUID_GROUPS"] = " ".join(f"{g.gid}:{g.name}" for g in layout.groups)
    mounts = [
        {"name": SHARE_VOLUME, "mountPath": "/nfsuid/share", "readOnly": True},
        {"name": RUN_VOLUME, "mountPath": "/nfsuid/run"},
    ]
    if identity is None:
        env["NFSUID_HOOKS"] = "1"
        if layout.expect_uid is not None:
            env["NFSUID_EXPECT_UID"] = str(layout.expect_uid)
    else:
        env |= {"NFSUID_EXPECT_UID": str(identity.uid), "NFSUID_ETC": "1"}
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


def lab_volumes(share: dict) -> list[dict]:
    return [share, {"name": HOME_VOLUME, "emptyDir": {}}, {"name": RUN_VOLUME, "emptyDir": {}}]


def _from_run(sub_path: str, mount_path: str) -> dict:
    """A file or directory the initContainer wrote, read-only in the lab."""
    return {"name": RUN_VOLUME, "subPath": sub_path, "mountPath": mount_path, "readOnly": True}


def lab_volume_mounts(layout: Layout, identity: Identity | None) -> list[dict]:
    """The user's directory, /home, what the initContainer wrote, and the extra mounts.

    Every mount of the share has a subPath: the share root is never in the lab. /home
    holds only what the initContainer made (the link, or the mount point) and is
    read-only, so that nothing the user writes there outlives their lab. Without an
    identity, start.sh's hooks make the account; with one, /etc/passwd and /etc/group
    are the image's with the account added, read-only: never writable by the user.
    """
    user_dir = layout.share_path if layout.home_symlink else layout.home
    mounts = [
        {"name": HOME_VOLUME, "mountPath": "/home", "readOnly": True},
        {"name": SHARE_VOLUME, "subPath": layout.home_dir, "mountPath": user_dir},
        _from_run(JUPYTER_CONFIG_DIR, JUPYTER_CONFIG_PATH),
    ]
    if identity is None:
        mounts += [
            _from_run(HOOK_NAME, f"{START_HOOK_DIR}/{HOOK_NAME}"),
            _from_run(GROUPS_HOOK_NAME, f"{BEFORE_HOOK_DIR}/{GROUPS_HOOK_NAME}"),
        ]
    else:
        mounts += [_from_run(PASSWD, "/etc/passwd"), _from_run(GROUP, "/etc/group")]
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
                "readOnly": extra.get("readOnly", True),
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
        return {"HOME": "/root", "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG_PATH}
    return {
        "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG_PATH,
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

"""What a lab pod may not contain, whatever the config, profiles or user options say.

Everything here is pure. Each check reads KubeSpawner's pod before the spawner adds its
own parts, as the API server would receive it (a camelCase dict, see
:func:`nfsuidspawner.inject.as_dict`), and raises
:class:`~nfsuidspawner.errors.NFSUIDError` naming the user, the setting and the fix.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from .errors import NFSUIDError
from .manifests import (
    BEFORE_HOOK_DIR,
    IDENTITY_ENV,
    NOTEBOOK_CONTAINER,
    SHARE_VOLUME,
    START_HOOK_DIR,
)

# start.sh execs its command at once when this is set: no hooks and no user switch, so a
# lab of the initcontainer source would run as root with the switch capabilities.
SKIP_START_SH = "_START_SH_EXECUTED"

# What start.sh's root phase (the image's hooks, conda's Python) reads from its
# environment: files found through these run as root.
ROOT_PHASE_ENV = (
    "PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "BASH_ENV",
    "ENV",
    "CONDARC",
    "XDG_CONFIG_HOME",
    "LD_AUDIT",
    "GCONV_PATH",
    "LOCPATH",
)
# Where start.sh's root phase finds code when nothing in the environment says otherwise:
# the docker-stacks image's PATH, its hook directories and root's home.
ROOT_PHASE_DIRS = (
    "/opt/conda",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/root",
    "/etc",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    START_HOOK_DIR,
    BEFORE_HOOK_DIR,
)
READ_ONLY_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")

Pod = dict[str, Any]


def _containers(pod: Pod) -> Iterator[dict[str, Any]]:
    spec = pod["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _lab(pod: Pod) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == NOTEBOOK_CONTAINER)


def _normal(path: str) -> PurePosixPath:
    return PurePosixPath("/" + posixpath.normpath("/" + path).lstrip("/"))


def _overlap(a: str, b: str) -> bool:
    """One of two absolute paths is the other, or below it."""
    pa, pb = _normal(a), _normal(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def check_share_aliases(
    pod: Pod, user: str, claim_name: str, nfs_server: str, nfs_export_path: str
) -> None:
    """The share reaches the pod once, as our volume, and only the spawner mounts it."""
    for volume in pod["spec"].get("volumes") or []:
        if volume["name"] == SHARE_VOLUME:
            continue
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        nfs = volume.get("nfs") or {}
        if claim and claim == claim_name:
            what = f"the claim {claim}"
        elif nfs and nfs_export_path and _host(nfs.get("server") or "") == _host(nfs_server):
            if not _overlap(nfs.get("path") or "/", nfs_export_path):
                continue
            what = f"the export {nfs_server}:{nfs.get('path')}"
        else:
            continue
        raise NFSUIDError(
            f"nfsuid: user {user}: volume {volume['name']!r} of the lab pod mounts the share"
            f" ({what}) a second time, outside the user's own directory (from"
            " c.KubeSpawner.volumes, a profile or extra_pod_config). Fix: remove it, and mount"
            " shared subdirectories with c.NFSUIDSpawner.extra_share_mounts"
        )
    for container in _containers(pod):
        for mount in container.get("volumeMounts") or []:
            if mount["name"] == SHARE_VOLUME:
                raise NFSUIDError(
                    f"nfsuid: user {user}: container {container['name']!r} mounts the share"
                    f" volume {SHARE_VOLUME!r} at {mount['mountPath']} itself; a subPath of"
                    " '.', 'home' or another user's directory would show it their files. Fix:"
                    " remove the mount, or use c.NFSUIDSpawner.extra_share_mounts"
                )


def check_env(pod: Pod, user: str, allow_identity_overrides: bool) -> None:
    """Nothing in the environment decides who the lab is, or skips start.sh's switch."""
    for container in _containers(pod):
        names = [e["name"] for e in container.get("env") or []]
        for name in names:
            if name in IDENTITY_ENV and not allow_identity_overrides:
                raise NFSUIDError(
                    f"nfsuid: user {user}: the environment sets {name} (from"
                    " c.KubeSpawner.environment, a profile's kubespawner_override or user"
                    " options), but nfsuidspawner owns the lab's identity. Fix: remove"
                    f" {name}, or accept the risk with"
                    " c.NFSUIDSpawner.unsafe_allow_identity_overrides = True"
                )
            if name == SKIP_START_SH:
                raise NFSUIDError(
                    f"nfsuid: user {user}: the environment of container {container['name']!r}"
                    f" sets {SKIP_START_SH}, which makes the image's start.sh skip the switch"
                    f" to the user. Fix: remove {SKIP_START_SH} from c.KubeSpawner.environment,"
                    " the profiles and extra_container_config"
                )
    lab = _lab(pod)
    if lab.get("envFrom") and not allow_identity_overrides:
        raise NFSUIDError(
            f"nfsuid: user {user}: the lab container takes its environment from"
            " envFrom (extra_container_config or a profile), which could set NB_UID,"
            f" GRANT_SUDO or {SKIP_START_SH} unseen. Fix: list the variables in"
            " c.KubeSpawner.environment instead, or accept the risk with"
            " c.NFSUIDSpawner.unsafe_allow_identity_overrides = True"
        )


def _writable_mounts(pod: Pod, container: dict[str, Any]) -> Iterator[str]:
    kinds = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = kinds.get(mount["name"], {})
        if not mount.get("readOnly") and not any(k in volume for k in READ_ONLY_VOLUMES):
            yield mount["mountPath"]


def _paths_in(value: str) -> list[str]:
    """The paths in a search-path value; a relative or empty one means the working dir, /."""
    return ["/" + p.lstrip("/") for p in re.split(r"[:; ]", value)]


def check_root_phase(pod: Pod, user: str, user_roots: Iterable[str]) -> None:
    """start.sh's root phase reads nothing the user can write.

    `user_roots` are where the user's own files are (/home, the share's mount path);
    every writable volume mount of the lab container counts too.
    """
    lab = _lab(pod)
    user_roots = list(user_roots)
    for mount in lab.get("volumeMounts") or []:
        if any(_overlap(mount["mountPath"], root) for root in user_roots):
            raise NFSUIDError(
                f"nfsuid: user {user}: the lab container mounts {mount['name']!r} at"
                f" {mount['mountPath']}, inside /home or the user's directory, where the user"
                " can turn the mount point into a link to a directory start.sh reads as root."
                " Fix: mount it elsewhere"
            )
    writable = [*user_roots, *_writable_mounts(pod, lab)]
    for mount in _writable_mounts(pod, lab):
        for place in ROOT_PHASE_DIRS:
            if _overlap(mount, place):
                raise NFSUIDError(
                    f"nfsuid: user {user}: the lab container has a writable mount at {mount},"
                    f" over {place}, where start.sh finds code it runs as root. Fix: mount it"
                    " read-only, or elsewhere"
                )
    for entry in lab.get("env") or []:
        if entry["name"] not in ROOT_PHASE_ENV or "value" not in entry:
            continue
        for path in _paths_in(entry.get("value") or ""):
            if any(_overlap(path, root) for root in writable):
                raise NFSUIDError(
                    f"nfsuid: user {user}: the environment sets {entry['name']}={entry['value']},"
                    f" and {path} is writable by the user; start.sh's root phase would run"
                    f" what it finds there as root. Fix: point {entry['name']} at image paths"
                    " only, or use identity_source 'hub'"
                )


def check_share_mounts(user: str, mount_paths: Iterable[str]) -> None:
    """No directory of the share covers a place start.sh's root phase reads. Read-only in
    this lab or not, someone can write it: a project member in their own lab, or anyone
    with a shell on the cluster's login nodes."""
    for mount in mount_paths:
        for place in ROOT_PHASE_DIRS:
            if _overlap(mount, place):
                raise NFSUIDError(
                    f"nfsuid: user {user}: extra_share_mounts puts a directory of the share at"
                    f" {mount}, over {place}, where start.sh finds code it runs as root. Fix:"
                    " mount it elsewhere, such as under share_mount_path"
                )


def check_admin_choices(
    user: str, image: str, allowed_images: Iterable[str], from_user: dict[str, str]
) -> None:
    """A lab that starts as root runs only what the admin chose.

    `from_user` names the settings that user input changed, with where the input came
    from. An image may come from user input when it matches `allowed_images`.
    """
    allowed = list(allowed_images)
    if not any(fnmatch.fnmatchcase(image, pattern) for pattern in allowed):
        raise NFSUIDError(
            f"nfsuid: user {user}: the image {image!r} is not in"
            f" c.NFSUIDSpawner.allowed_images ({', '.join(allowed) or 'empty'}). A lab of the"
            " initcontainer source starts as root, so it runs only images the admin chose."
            " Fix: choose a listed image, or add a pattern for it to allowed_images"
        )
    for name, origin in from_user.items():
        if name != "image":
            raise NFSUIDError(
                f"nfsuid: user {user}: {name} came from user input ({origin}). A lab of the"
                " initcontainer source starts as root, so its command, args and lifecycle"
                f" hooks come only from the admin's config. Fix: do not map user options to"
                f" {name}, or use identity_source 'hub'"
            )


def profile_images(profile_list: list[dict[str, Any]]) -> list[str]:
    """The images a profile list names itself: its profiles' and their listed choices'."""
    images = []
    for profile in profile_list:
        overrides = [profile.get("kubespawner_override") or {}]
        for option in (profile.get("profile_options") or {}).values():
            for choice in (option.get("choices") or {}).values():
                overrides.append(choice.get("kubespawner_override") or {})
        images += [o["image"] for o in overrides if isinstance(o.get("image"), str)]
    return images


def unlisted_overrides(profile: dict[str, Any], user_options: dict[str, Any]) -> list[str]:
    """The settings that the user's free-form unlisted choices fill in, for this profile."""
    names = []
    for option_name, option in (profile.get("profile_options") or {}).items():
        if user_options.get(f"{option_name}--unlisted-choice"):
            names += list((option.get("unlisted_choice") or {}).get("kubespawner_override") or {})
    return names

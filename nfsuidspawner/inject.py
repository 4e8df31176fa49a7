"""Adding the spawner's parts to the pod KubeSpawner built.

Pure: :func:`inject` takes KubeSpawner's ``V1Pod`` (a mix of models and camelCase dicts)
and the parts :func:`pod_parts` builds from :mod:`nfsuidspawner.manifests`, and returns the
pod with what decides identity replaced and the pod securityContext merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import models
from kubespawner.utils import get_k8s_model

from .errors import NFSUIDError
from .identity import Identity
from .manifests import (
    NOTEBOOK_CONTAINER,
    RUNTIME_DEFAULT_SECCOMP,
    Layout,
    identity_init_container,
    lab_env,
    lab_security_context,
    lab_volume_mounts,
    lab_volumes,
)

# containerd 2.x sets this to 0 in every pod, so that any uid can bind a port below
# 1024: all an NFS export's `secure` option asks of an AUTH_SYS client, which may then
# claim any uid. 1024 gives privileged ports back to privileged processes only.
PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"
PRIVILEGED_PORTS = 1024
# The pod securityContext fields that decide who the lab is. The spawner owns them.
IDENTITY_POD_FIELDS = (
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "supplementalGroups",
    "supplementalGroupsPolicy",
)


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


def pod_security_context(user: str, admin: dict | None, groups: PodGroups | None = None) -> dict:
    """The admin's pod securityContext, with the identity fields and the port sysctl ours.

    Everything else an admin set survives: other sysctls, seLinuxOptions,
    appArmorProfile, a Localhost seccompProfile.
    """
    merged = {k: v for k, v in (admin or {}).items() if k not in IDENTITY_POD_FIELDS}
    if groups and groups.gids:
        merged["supplementalGroups"] = list(groups.gids)
    if groups and groups.strict:
        merged["supplementalGroupsPolicy"] = "Strict"
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


@dataclass(frozen=True)
class PodGroups:
    """The pod's supplementalGroups, and whether the image's /etc/group may add any."""

    gids: tuple[int, ...]
    strict: bool


@dataclass(frozen=True)
class PodParts:
    """Everything nfsuidspawner adds to one pod."""

    volumes: list[dict]
    init_container: dict
    mounts: list[dict]
    env: dict[str, str]
    security_context: dict
    restart_policy: str
    groups: PodGroups | None


def pod_parts(
    layout: Layout,
    share: dict,
    identity: Identity | None,
    init_image: str,
    min_uid: int,
    min_gid: int,
    strict_groups: bool = False,
) -> PodParts:
    return PodParts(
        volumes=lab_volumes(share),
        init_container=identity_init_container(layout, init_image, min_uid, min_gid, identity),
        mounts=lab_volume_mounts(layout, identity),
        env=lab_env(layout, identity),
        security_context=lab_security_context(identity),
        # A lab that starts as root must never start twice in one pod: a restart would
        # run start.sh's root phase again, next to whatever the user left in the pod's
        # emptyDirs. The hub sees the server stop, and the next start gets a fresh pod.
        restart_policy="OnFailure" if identity else "Never",
        # A lab that starts as the user gets its groups from the pod. One that starts as
        # root gets them from /etc/group, through start.sh's sudo (the groups hook).
        groups=PodGroups(tuple(g.gid for g in layout.groups), strict_groups) if identity else None,
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
    spec.security_context = pod_security_context(user, as_dict(spec.security_context), parts.groups)
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

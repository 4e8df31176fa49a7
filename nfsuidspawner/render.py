"""`nfsuidspawner render USER`: every object the hub would create for a user, as YAML.

The objects come from the spawner itself, built from the site's config, exactly as a spawn
builds them (get_pod_manifest, and the PV and PVC of ensure-pv). They are strict-validated
against a Kubernetes version, and the pod's Pod Security level is said with its reasons.
No cluster is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from traitlets.config import Config

from . import manifests, pss
from .identity import Identity
from .inject import as_dict
from .offline import spawner_for


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    problems: list[str]
    level: str
    why: list[str]


async def objects_for(
    config: Config,
    user: str,
    server: str = "",
    profile: str | None = None,
    identity: Identity | None = None,
) -> list[dict[str, Any]]:
    """What the hub creates for `user`'s `server` with `profile`, in creation order.

    A known `identity` stands in for a source the hub asks before the pod exists (its
    mount of the share, a directory service): the pod is the same for the same owner. The
    initcontainer source finds it in the pod, so there it changes nothing.
    """
    spawner = spawner_for(config, user, server)
    if identity and spawner.identity_source != "initcontainer":
        spawner.identity_source = lambda _: identity
        spawner.hub_share_path = ""
    spawner.user_options = {"profile": profile} if profile else {}
    await spawner.run_auth_state_hook(None)
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    if spawner.nfs_storage != "ensure-pv":
        return [pod]
    pv = manifests.persistent_volume(
        spawner.nfs_pv_name,
        spawner.nfs_server,
        spawner.nfs_export_path,
        spawner.nfs_mount_options,
        spawner.nfs_capacity,
        spawner.namespace,
        spawner.nfs_pvc_name,
    )
    pvc = manifests.persistent_volume_claim(
        spawner.nfs_pvc_name, spawner.namespace, spawner.nfs_pv_name, spawner.nfs_capacity
    )
    return [pv, pvc, pod]


def check(objects: list[dict[str, Any]], kubernetes_version: str) -> Rendered:
    """Strict schema problems of each object, and the pod's Pod Security level."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {e.message}")
    level, why = pss.level(objects[-1])
    return Rendered(objects, problems, level, why)


def explain(rendered: Rendered, kubernetes_version: str, identity: Identity | None) -> str:
    """The lines `render` prints after the YAML (as YAML comments)."""
    lines = [
        f"strict schema of Kubernetes {kubernetes_version}: "
        + ("valid" if not rendered.problems else "INVALID"),
        *(f"  {p}" for p in rendered.problems),
        f"Pod Security: {rendered.level}"
        + (
            f" (not {'restricted' if rendered.level == 'baseline' else 'baseline'}:)"
            if rendered.why
            else ""
        ),
        *(f"  {w}" for w in rendered.why),
    ]
    if identity:
        lines.append(
            f"with the directory owned by {identity.uid}:{identity.gid}, start.sh switches the"
            f" lab to uid {identity.uid}, gid {identity.gid}"
        )
    return "\n".join(f"# {line}" for line in lines)

"""The `ensure-pv` storage way: create the NFS PersistentVolume and its claim, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.client.rest import ApiException

from .errors import NFSUIDError
from .inject import as_dict
from .manifests import persistent_volume, persistent_volume_claim

PV_RULE = '{apiGroups: [""], resources: ["persistentvolumes"], verbs: ["get", "create"]}'


def _pv_fields(pv: dict) -> dict[str, Any]:
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    return {
        "nfs.server": (spec.get("nfs") or {}).get("server"),
        "nfs.path": (spec.get("nfs") or {}).get("path"),
        "claimRef": f"{ref.get('namespace')}/{ref.get('name')}" if ref else None,
    }


def _pvc_fields(pvc: dict) -> dict[str, Any]:
    return {"volumeName": (pvc.get("spec") or {}).get("volumeName")}


async def _create(
    create: Callable[[dict], Awaitable[Any]],
    read: Callable[[], Awaitable[Any]],
    fields: Callable[[dict], dict[str, Any]],
    body: dict,
    fix: str,
) -> None:
    kind, name = body["kind"], body["metadata"]["name"]
    try:
        await create(body)
        return
    except ApiException as e:
        if e.status == 403:
            raise NFSUIDError(
                f"nfsuid: the hub may not create {kind} {name} (403 Forbidden). Fix: {fix}"
            ) from None
        if e.status != 409:
            raise
    # It exists already. "Ensure" uses it only if it is the one we would have made: one
    # left over from another share or claim would mount someone else's data.
    try:
        found, wanted = fields(as_dict(await read())), fields(body)
    except ApiException as e:
        raise NFSUIDError(
            f"nfsuid: {kind} {name} exists, but the hub cannot read it to compare"
            f" ({e.status} {e.reason}). Fix: {fix}"
        ) from None
    if found != wanted:
        differ = ", ".join(
            f"{k} {found[k]!r} (wanted {wanted[k]!r})" for k in wanted if found[k] != wanted[k]
        )
        raise NFSUIDError(
            f"nfsuid: the existing {kind} {name} is not the one nfs_storage 'ensure-pv' would"
            f" create: {differ}. Fix: delete it if it is a leftover, or point"
            " c.NFSUIDSpawner.nfs_pv_name / nfs_pvc_name at names of their own"
        )


async def ensure_share(api: CoreV1Api, pv: dict, pvc: dict) -> None:
    """Create `pv` and `pvc` unless they exist as wanted. Nothing is ever updated or deleted."""
    namespace, pv_name, pvc_name = (
        pvc["metadata"]["namespace"],
        pv["metadata"]["name"],
        pvc["metadata"]["name"],
    )
    await _create(
        lambda body: api.create_persistent_volume(body=body),
        lambda: api.read_persistent_volume(pv_name),
        _pv_fields,
        pv,
        f"PersistentVolumes are cluster-scoped and the Zero-to-JupyterHub hub Role does"
        f" not grant them: bind a ClusterRole with the rule {PV_RULE} to the hub's"
        " ServiceAccount (helm-values/manifests/ensure-pv-rbac.yaml), create the PV"
        " yourself and use nfs_storage 'existing-pvc', or use nfs_storage 'inline'",
    )
    await _create(
        lambda body: api.create_namespaced_persistent_volume_claim(namespace, body),
        lambda: api.read_namespaced_persistent_volume_claim(pvc_name, namespace),
        _pvc_fields,
        pvc,
        f"grant the hub's ServiceAccount create on persistentvolumeclaims in {namespace}",
    )


async def ensure_configured_share(api: CoreV1Api, options: Any) -> None:
    """ensure_share for the PersistentVolume and claim of the spawner's settings (`options`):
    nfs_pv_name, nfs_pvc_name, nfs_server, nfs_export_path, nfs_mount_options, nfs_capacity
    and namespace."""
    pv, pvc, capacity = options.nfs_pv_name, options.nfs_pvc_name, options.nfs_capacity
    server, export, mount = options.nfs_server, options.nfs_export_path, options.nfs_mount_options
    await ensure_share(
        api,
        persistent_volume(pv, server, export, mount, capacity, options.namespace, pvc),
        persistent_volume_claim(pvc, options.namespace, pv, capacity),
    )

"""The `ensure-pv` storage way: create the NFS PersistentVolume and its claim, once."""

from __future__ import annotations

from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.client.rest import ApiException

from .errors import NFSUIDError

PV_RULE = '{apiGroups: [""], resources: ["persistentvolumes"], verbs: ["get", "create"]}'


async def _create(call, kind: str, name: str, body: dict, fix: str) -> None:
    try:
        await call(body=body)
    except ApiException as e:
        if e.status == 409:  # it exists already: that is what "ensure" means
            return
        if e.status == 403:
            raise NFSUIDError(
                f"nfsuid: the hub may not create {kind} {name} (403 Forbidden). Fix: {fix}"
            ) from None
        raise


async def ensure_share(api: CoreV1Api, pv: dict, pvc: dict) -> None:
    """Create `pv` and `pvc` unless they exist. Nothing is ever updated or deleted."""
    namespace = pvc["metadata"]["namespace"]
    await _create(
        api.create_persistent_volume,
        "PersistentVolume",
        pv["metadata"]["name"],
        pv,
        f"PersistentVolumes are cluster-scoped and the Zero-to-JupyterHub hub Role does"
        f" not grant them: bind a ClusterRole with the rule {PV_RULE} to the hub's"
        " ServiceAccount (helm-values/manifests/ensure-pv-rbac.yaml), create the PV"
        " yourself and use nfs_storage 'existing-pvc', or use nfs_storage 'inline'",
    )
    await _create(
        lambda body: api.create_namespaced_persistent_volume_claim(namespace, body),
        "PersistentVolumeClaim",
        pvc["metadata"]["name"],
        pvc,
        f"grant the hub's ServiceAccount create on persistentvolumeclaims in {namespace}",
    )

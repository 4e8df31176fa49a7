"""The sandbox kubelet's volumes: each of a pod's volumes as a host directory.

An ``emptyDir`` is a directory of the pod's own (removed with the pod); an ``nfs`` volume, or a
PersistentVolumeClaim bound to an NFS PersistentVolume, is the local directory standing in for
that export (subdirectories of an export may be mounted too; a path leaving the export is
refused); a ``configMap`` or ``secret`` is written out as one file per key. A failure, the API
server's answer to a lookup included (an error, or no answer while it restarts), reads like a
kubelet's ``FailedMount`` event and is retried by the pod with back-off.
"""

from __future__ import annotations

import base64
import os
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from .kubeclient import ApiStatusError
from .runtime import Obj


class MountError(Exception):
    """A volume cannot be set up (the message of a FailedMount event)."""


class Volumes:
    """Sets up volumes from `exports` ("server:/path" -> local directory) and the API server."""

    def __init__(self, exports: dict[str, str], api: Callable[..., Awaitable[Any]]) -> None:
        self.exports = exports
        self.api = api

    def export_dir(self, server: str, path: str) -> str:
        """The local directory standing in for server:path (a subdirectory of an export)."""
        norm = posixpath.normpath("/" + path.lstrip("/"))
        if ".." in path.split("/"):
            raise MountError(f"mount.nfs: invalid path {server}:{path}")
        best: tuple[int, str] | None = None
        best_key = ""
        for key, local in self.exports.items():
            kserver, _, kpath = key.partition(":")
            kpath = posixpath.normpath(kpath or "/")
            if kserver != server:
                continue
            if norm == kpath or norm.startswith(kpath.rstrip("/") + "/"):
                rest = norm[len(kpath) :].lstrip("/")
                if best is None or len(kpath) > best[0]:
                    best = (len(kpath), os.path.join(local, rest) if rest else local)
                    best_key = key
        if best is None:
            raise MountError(f"mount.nfs: access denied by server while mounting {server}:{path}")
        export_root = os.path.realpath(self.exports[best_key])
        local = os.path.realpath(best[1])
        if local != export_root and not local.startswith(export_root + "/"):
            raise MountError(f"mount.nfs: {server}:{path} leaves the export")
        if not os.path.isdir(local):
            raise MountError(f"mount.nfs: mounting {server}:{path} failed, reason given by "
                             "server: No such file or directory")  # fmt: skip
        return best[1]

    async def setup(self, pod: Obj, ns: str, pod_dir: Path) -> dict[str, str]:
        """Volume name -> host directory, for each volume of the pod."""
        out: dict[str, str] = {}
        for v in pod["spec"].get("volumes") or []:
            name = v["name"]
            try:
                if "emptyDir" in v:
                    d = pod_dir / "volumes" / name
                    d.mkdir(parents=True, exist_ok=True)
                    os.chmod(d, 0o777)
                    out[name] = str(d)
                elif "nfs" in v:
                    out[name] = self.export_dir(v["nfs"]["server"], v["nfs"]["path"])
                elif "persistentVolumeClaim" in v:
                    out[name] = await self._pvc_dir(ns, v["persistentVolumeClaim"]["claimName"])
                elif "configMap" in v or "secret" in v:
                    out[name] = await self._keys_dir(ns, pod_dir, v)
            except (MountError, ApiStatusError, aiohttp.ClientError) as e:
                raise MountError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
        return out

    async def _pvc_dir(self, ns: str, claim: str) -> str:
        try:
            pvc = await self.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        except ApiStatusError as e:
            raise MountError(f'persistentvolumeclaim "{claim}" not found ({e.status})') from None
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            pvs = await self.api("GET", "/api/v1/persistentvolumes")
            for pv in pvs["items"]:
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("namespace") == ns and ref.get("name") == claim:
                    pv_name = pv["metadata"]["name"]
        if not pv_name:
            raise MountError(f'persistentvolumeclaim "{claim}" is not bound')
        try:
            pv = await self.api("GET", f"/api/v1/persistentvolumes/{pv_name}")
        except ApiStatusError as e:
            raise MountError(f'persistentvolume "{pv_name}" not found ({e.status})') from None
        nfs = (pv.get("spec") or {}).get("nfs")
        if not nfs:
            raise MountError(f'persistentvolume "{pv_name}" has no spec.nfs (sandbox: NFS only)')
        return self.export_dir(nfs["server"], nfs["path"])

    async def _keys_dir(self, ns: str, pod_dir: Path, v: Obj) -> str:
        kind = "configMap" if "configMap" in v else "secret"
        src = v[kind]
        name = src.get("name") if kind == "configMap" else src.get("secretName")
        plural = "configmaps" if kind == "configMap" else "secrets"
        try:
            obj = await self.api("GET", f"/api/v1/namespaces/{ns}/{plural}/{name}")
        except ApiStatusError as e:
            if src.get("optional"):
                obj = {}
            else:
                raise MountError(f'{kind.lower()} "{name}" not found ({e.status})') from None
        d = pod_dir / "volumes" / v["name"]
        d.mkdir(parents=True, exist_ok=True)
        mode = src.get("defaultMode", 0o644)
        for key, value in (obj.get("data") or {}).items():
            data = base64.b64decode(value) if kind == "secret" else value.encode()
            (d / key).write_bytes(data)
            os.chmod(d / key, mode)
        return str(d)

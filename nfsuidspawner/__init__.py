"""nfsuidspawner: JupyterLab pods that run as the owner of the user's NFS directory."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Identity", "NFSUIDError", "NFSUIDSpawner", "nss_identity"]

# Imported when first used: the command line (`nfsuidspawner demo`, `audit`) should not pay
# for JupyterHub and KubeSpawner before it has checked its arguments.
_HOMES = {
    "Identity": "identity",
    "NFSUIDError": "errors",
    "NFSUIDSpawner": "spawner",
    "nss_identity": "sources",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'nfsuidspawner' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)

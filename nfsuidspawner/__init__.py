"""nfsuidspawner: JupyterLab pods that run as the owner of the user's NFS directory."""

from .errors import NFSUIDError
from .identity import Identity
from .sources import nss_identity
from .spawner import NFSUIDSpawner

__all__ = ["Identity", "NFSUIDError", "NFSUIDSpawner", "nss_identity"]

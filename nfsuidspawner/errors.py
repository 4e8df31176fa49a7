"""The one exception nfsuidspawner raises when it refuses to start a lab."""


class NFSUIDError(Exception):
    """A lab cannot be started. The message names the user, the path and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # JupyterHub shows this attribute, when present, on the spawn page and in the API.
        self.jupyterhub_message = message

"""The one exception nfsuidspawner raises when it refuses to start a lab."""

from tornado import web


class NFSUIDError(web.HTTPError):
    """A lab cannot be started. The message names the user, the path and the fix.

    It is an HTTPError (400, a refusal rather than a fault) because JupyterHub passes
    those through to the user: a plain exception that ends a spawn within the spawn
    page's first second is shown only as "Unhandled error starting server". JupyterHub
    6's SpawnException is such an HTTPError too, but the Zero-to-JupyterHub 4.4 hub
    runs JupyterHub 5.
    """

    def __init__(self, message: str) -> None:
        super().__init__(400, message)
        # JupyterHub shows this attribute, when present, on the spawn page and in the API.
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.jupyterhub_message

    # The error page's heading is "<status> : <reason>". JupyterHub sets the reason of a
    # failed spawn's exception to "error"; a refusal says what it is.
    @property
    def reason(self) -> str:
        return "lab refused"

    @reason.setter
    def reason(self, _: str | None) -> None:
        pass

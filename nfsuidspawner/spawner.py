"""NFSUIDSpawner: KubeSpawner whose labs run as the owner of the user's NFS directory."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import fnmatch
import functools
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from typing import Any, ClassVar

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from sqlalchemy.orm import object_session
from traitlets import default

from . import adoption, cleanup, failures, inject, manifests, podcheck, progress, status
from .errors import NFSUIDError
from .groups import Groups, check_groups
from .identity import Identity, check_expected_owner, check_ids, home_dir, refusal, unix_name
from .options import NFSUIDOptions
from .sources import owner_on_hub_mount, supplementary_groups
from .storage import ensure_configured_share

# What a lab of the initcontainer source runs as root, before start.sh switches users.
ADMIN_ONLY = ("image", "cmd", "args", "lifecycle_hooks", "extra_container_config")
# True while KubeSpawner sends a pod create: a stop() then is its answer to a 409 Conflict.
_creating: ContextVar[bool] = ContextVar("nfsuid_creating", default=False)


class NFSUIDSpawner(NFSUIDOptions, KubeSpawner):
    """Run each lab as the uid/gid that owns the user's directory on an NFS share.

    The lab mounts only that directory (by subPath), keeps the share's own
    path, and gets a ``/home/<user>`` symlink to it. The options are in
    :mod:`nfsuidspawner.options`; this class is the glue to KubeSpawner.
    """

    identity: Identity | None = None
    # Starts so far, by pod, so that a failed start's reaper stops when a new one begins.
    # Kept on the class: after a failed start JupyterHub makes a new Spawner object.
    _starts: ClassVar[dict[str, int]] = {}
    _watching_init = False
    _read: dict | None = None  # the version of the pod is_pod_running last read
    _reaper: asyncio.Future | None = None
    # This start, as start() returned it: progress() reports until it ends.
    _started: asyncio.Future | None = None

    @default("allowed_images")
    def _default_allowed_images(self) -> list[str]:
        images = [self._configured["image"]]
        if isinstance(self.profile_list, list):
            images += podcheck.profile_images(self.profile_list)
        return list(dict.fromkeys(images))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The admin's own values, before any profile or user option touches the traits.
        self._configured = {name: copy.deepcopy(getattr(self, name)) for name in ADMIN_ONLY}
        self._from_user: dict[str, str] = {}
        # What the spawner decided, for the spawn's progress events (see _note).
        self._notes: list[str] = []
        self._noted = asyncio.Event()

    async def run_auth_state_hook(self, auth_state: Any) -> None:
        # The first hook of every start. The Spawner object is reused, and KubeSpawner's
        # profile overrides and user options set traits in place: what an earlier start's
        # user input left in them must not pass for the admin's choice now.
        for name in ADMIN_ONLY:
            setattr(self, name, copy.deepcopy(self._configured[name]))
        self._from_user = {}
        self._notes.clear()  # in place: a progress() reader may hold the list already
        self._started = None
        await super().run_auth_state_hook(auth_state)

    async def _run_apply_user_options(self, user_options: dict) -> None:
        # JupyterHub (5.3+) applies user_options here, just before start(): note which of
        # the settings a root-phase lab runs it changes.
        before = {name: copy.deepcopy(getattr(self, name)) for name in ADMIN_ONLY}
        await super()._run_apply_user_options(user_options)
        for name in ADMIN_ONLY:
            if getattr(self, name) != before[name]:
                self._from_user[name] = "c.Spawner.apply_user_options"

    def _load_profile(self, slug: str | None, profile_list: list) -> None:
        # KubeSpawner formats a free-form unlisted_choice into its option's overrides here.
        profile = self._get_profile(slug, profile_list)
        for name in podcheck.unlisted_overrides(profile, self.user_options):
            if name in ADMIN_ONLY:
                self._from_user[name] = f"an unlisted_choice of profile {profile.get('slug')!r}"
        super()._load_profile(slug, profile_list)

    def _layout(self) -> manifests.Layout:
        name = self.user.name
        return manifests.Layout(
            user=name,
            home_dir=home_dir(self.home_dir_template, name),
            share_mount_path=self.share_mount_path,
            nb_user=unix_name(name, self.image_account_names),
            home_symlink=self.home_symlink,
            extra_share_mounts=tuple(self.extra_share_mounts),
        )

    def _check_config(self) -> None:
        needs = []
        if self.nfs_storage in ("inline", "ensure-pv"):
            needs += [t for t in ("nfs_server", "nfs_export_path") if not getattr(self, t)]
        if self.identity_source == "hub" and not self.hub_share_path:
            needs.append("hub_share_path")
        if needs:
            raise NFSUIDError(
                f"nfsuid: user {self.user.name}: the spawner is not configured: set "
                + ", ".join(f"c.NFSUIDSpawner.{t}" for t in needs)
                + f" (nfs_storage {self.nfs_storage!r}, identity_source {self.identity_source!r})"
            )

    async def _known_identity(self, layout: manifests.Layout) -> Identity | None:
        """The identity the hub knows before the pod exists; None for the initcontainer source."""
        source = self.identity_source
        if source == "initcontainer":
            return None
        args = (
            layout.user,
            self.hub_share_path,
            layout.home_dir,
            layout.share_mount_path,
            self.identity_timeout,
            self.min_uid,
            self.min_gid,
        )
        if source == "hub":
            return await owner_on_hub_mount(*args)
        found = await maybe_future(source(self))
        if not isinstance(found, Identity):
            raise NFSUIDError(
                f"nfsuid: user {layout.user}: identity_source returned {found!r}, not an"
                " nfsuidspawner.Identity. Fix: return Identity(uid, gid)"
            )
        identity = check_ids(
            layout.user, layout.share_path, found.uid, found.gid, self.min_uid, self.min_gid
        )
        if self.hub_share_path:
            owner = await owner_on_hub_mount(*args)
            check_expected_owner(layout.user, layout.share_path, owner.uid, identity)
        return identity

    def get_args(self) -> list[str]:
        args = super().get_args()
        if not self.notebook_dir:
            # The lab starts in / (see inject.inject); open it at the user's home.
            args.append(f"--ServerApp.root_dir={self._layout().home}")
        return args

    async def _groups(
        self, layout: manifests.Layout, identity: Identity | None
    ) -> tuple[Groups, int | None]:
        """The groups the lab gets, and the uid they belong to, when the source says (NSS).

        NSS knows the user by the hub's name, not by the directory: its groups go only to
        a lab of the uid NSS gives that name, checked here or, for the initcontainer
        source, by the initContainer.
        """
        found, owner = await supplementary_groups(
            self.supplemental_groups, self, self.identity_timeout
        )
        if owner is not None and identity and identity.uid != owner:
            raise refusal(
                layout.user, layout.share_path, "wrong_owner", uid=identity.uid, expected_uid=owner
            )
        groups = check_groups(
            found,
            identity.gid if identity else None,
            layout.nb_user,
            self.min_gid,
            self.allowed_low_gids,
            self.image_account_names,
        )
        for reason in groups.refused:
            self.log.warning("nfsuid: user %s: %s", layout.user, reason)
            self._note(f"nfsuid: user {layout.user}: {reason}")
        return groups, owner

    def _note(self, message: str) -> None:
        """Show this on the spawn page, once: progress() yields it as soon as it is made."""
        if message not in self._notes:
            self._notes.append(message)
            self._noted.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        reflector = self.event_reflector
        if not reflector:
            return []
        resources = reflector.resources.values()
        return progress.pod_events(resources, self.namespace, self.pod_name, self._last_event)

    def progress(self) -> AsyncGenerator[dict[str, Any], None]:
        events = aiter(super().progress())
        return progress.merged(events, self._notes, self._noted, lambda: self._started)

    async def get_pod_manifest(self) -> Any:
        layout = self._layout()
        self._note(f"nfsuid: checking {layout.share_path}, the directory of {layout.user}")
        identity = await self._known_identity(layout)
        if identity and (self.identity_source == "hub" or self.hub_share_path):
            # Its owner on the hub's mount; otherwise the pod confirms it (is_pod_running).
            self._note(progress.runs_as(layout, identity))
        groups, owner = await self._groups(layout, identity)
        layout = dataclasses.replace(layout, groups=groups.granted, expect_uid=owner)
        if identity is None:
            podcheck.check_admin_choices(
                layout.user, self.image, self.allowed_images, self._from_user
            )
        pod = await super().get_pod_manifest()
        # What config, profiles and user options made, before the spawner adds its own.
        theirs = inject.as_dict(pod)
        podcheck.check_share_aliases(
            theirs, layout.user, self.nfs_pvc_name, self.nfs_server, self.nfs_export_path
        )
        podcheck.check_env(theirs, layout.user, self.unsafe_allow_identity_overrides)
        if identity is None:
            shared = [m["mountPath"] for m in layout.extra_share_mounts]
            podcheck.check_share_mounts(layout.user, shared)
            podcheck.check_root_phase(theirs, layout.user, ["/home", layout.share_path, *shared])
        share = manifests.share_volume(
            self.nfs_storage, self.nfs_server, self.nfs_export_path, self.nfs_pvc_name
        )
        parts = inject.pod_parts(
            layout,
            share,
            identity,
            self.init_image or self._check_image(),
            self.min_uid,
            self.min_gid,
            self.strict_supplemental_groups,
        )
        self.identity = identity
        return inject.inject(pod, parts, layout.user)

    def start(self) -> asyncio.Future:
        # JupyterHub's start_timeout runs from now: see failures.start_budget.
        deadline = asyncio.get_running_loop().time() + failures.start_budget(self.start_timeout)
        self._started = asyncio.ensure_future(self._start_checked(deadline))
        return self._started

    async def _start_checked(self, deadline: float) -> Any:
        self._check_config()
        key = f"{self.namespace}/{self.pod_name}"
        start = self._starts[key] = self._starts.get(key, 0) + 1
        self._watching_init = True
        bound = asyncio.timeout_at(deadline)
        try:
            async with bound:
                if self.nfs_storage == "ensure-pv":
                    await ensure_configured_share(self.api, self)
                url = await super().start()
        except NFSUIDError as refused:
            self._note(str(refused))
            # The initContainer refused (or the pod was never made): nothing may stay.
            try:
                await asyncio.wait_for(self.stop(now=True), self.k8s_api_request_retry_timeout)
            except Exception as e:
                self.log.warning("nfsuid: deleting pod %s after a refusal: %r", self.pod_name, e)
                self._reaper = asyncio.ensure_future(self._reap_leftover_pod(key, start))
            raise
        except BaseException as failed:
            # Failed, timed out or cancelled by the hub. A pod may exist, or may still be
            # made by a create request that timed out here but reaches the API server
            # later; the hub deletes only pods that its poll() sees.
            self._reaper = asyncio.ensure_future(self._reap_leftover_pod(key, start))
            if bound.expired() and isinstance(failed, TimeoutError):
                raise failures.timed_out(self._not_ready(failures.not_ready)) from failed
            # KubeSpawner's own exception, with a line for the user: JupyterHub shows
            # jupyterhub_message, and handles the exception by its type as before.
            if message := failures.start_failure(self.user.name, key, failed):
                failed.jupyterhub_message = message  # type: ignore[attr-defined]
            raise
        finally:
            self._watching_init, self._read = False, None
        self._record_identity()
        return url

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        creating = _creating.set(True)
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        finally:
            _creating.reset(creating)

    async def stop(self, now: bool = False) -> None:
        await self._start_watching_pods()
        if theirs := self._reflected_pod(foreign=True):  # never deleted: see cleanup.foreign
            message = failures.name_taken(self.user.name, f"{self.namespace}/{self.pod_name}")
            self.log.warning("%s: %s", message, theirs["metadata"].get("annotations"))
            if _creating.get():
                raise NFSUIDError(message)
            return None
        if not _creating.get():
            return await super().stop(now)
        # KubeSpawner's answer to a 409 Conflict, by uid and bounded: see cleanup.clear_the_way.
        delete = functools.partial(self._delete_pod, why="in the way")
        timeout = self.k8s_api_request_retry_timeout
        if not await cleanup.clear_the_way(self._reflected_pod, delete, timeout):
            pod = f"{self.namespace}/{self.pod_name}"
            raise failures.timed_out(failures.pod_not_gone(self.user.name, pod, timeout))

    async def _delete_pod(self, uid: str, why: str = "of a failed start") -> None:
        self.log.warning("nfsuid: deleting pod %s %s %s", self.pod_name, uid, why)
        timeout = self.k8s_api_request_timeout
        await cleanup.delete_pod(self.api, self.namespace, self.pod_name, uid, timeout)

    def is_pod_running(self, pod: dict | None) -> bool:
        # KubeSpawner polls this while it waits for the pod; a refusal ends the wait at once.
        # Its reflector holds a new dict for each version of the pod: each is read once.
        if self._watching_init and pod is not self._read:
            if reason := status.init_failure(pod):
                raise NFSUIDError(failures.refused(self.user.name, reason))
            self._read = pod
            if found := status.resolved_identity(pod):
                self._note(progress.runs_as(self._layout(), Identity(*found)))
        return super().is_pod_running(pod)

    async def _reap_leftover_pod(self, key: str, start: int) -> None:
        """Delete the pod a failed start left or made late, once the hub lets go of the
        server, until a new start of the same pod (by any Spawner object) begins. A hub that
        shuts down cancels pending starts but keeps their servers (cleanup_servers False, as
        in Zero to JupyterHub): the next hub adopts their pods."""
        await cleanup.reap(
            self._reflected_pod,
            self._delete_pod,
            wanted=lambda: self._starts.get(key) == start,
            held=lambda: self.server is not None and self.pending != "stop",
            window=self.k8s_api_request_retry_timeout + self.k8s_api_request_timeout,
        )

    def _not_ready(self, message: Callable[..., str]) -> str:
        key = f"{self.namespace}/{self.pod_name}"
        return message(self.user.name, key, self.start_timeout, self._reflected_pod(), self.events)

    async def get_url(self) -> str:
        # A restarted hub checks an unfinished start's lab at this address: see adoption.
        left = adoption.time_left(self.orm_spawner.started, self.start_timeout)
        pod = await adoption.wait_for_pod(self._reflected_pod, self.is_pod_running, left)
        if not (pod and self.is_pod_running(pod)):
            self.log.error(self._not_ready(failures.not_adopted))
        if pod and pod["status"].get("podIP"):
            return self._get_pod_url(pod)
        return await super().get_url()

    def _reflected_pod(self, foreign: bool = False) -> dict | None:
        """The pod that has the name if it is this server's (else another's, if `foreign`)."""
        reflector = self.pod_reflector
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None
        return pod if cleanup.foreign(pod, self.user.name, self.name) == foreign else None

    def _check_image(self) -> str:
        """The identity check runs in the lab's image only if the admin chose that image:
        a user's image could carry an `sh` that skips it."""
        if any(fnmatch.fnmatchcase(self.image, p) for p in self.allowed_images):
            return self.image
        return self._configured["image"]

    def _record_identity(self) -> bool:
        """Take the identity from the pod if it is not known (the initcontainer source, or a
        lab a restarted hub adopted, whose state was saved before its start returned)."""
        found = None if self.identity else status.lab_identity(self._reflected_pod())
        if found:
            self.identity = Identity(*found)
        return bool(found)

    async def poll(self) -> int | None:
        await self._start_watching_pods()
        if self._reflected_pod(foreign=True):  # not this server's lab: see cleanup.foreign
            return 1
        exit_code = await super().poll()
        # JupyterHub saves the state only when a start returns and when a server stops.
        if exit_code is None and not self._watching_init and self._record_identity():
            self.orm_spawner.state = self.get_state()
            if session := object_session(self.orm_spawner):
                session.commit()
        return exit_code

    def get_state(self) -> dict:
        state = super().get_state()
        if self.identity:
            state["nfsuid_identity"] = dataclasses.asdict(self.identity)
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if "nfsuid_identity" in state:
            self.identity = Identity(**state["nfsuid_identity"])

    def clear_state(self) -> None:
        super().clear_state()
        self.identity = None

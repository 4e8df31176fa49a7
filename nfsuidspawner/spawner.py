"""NFSUIDSpawner: KubeSpawner whose labs run as the owner of the user's NFS directory."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from typing import Any

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from traitlets import (
    Bool,
    Callable,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    Unicode,
    Union,
    default,
    validate,
)

from . import inject, manifests, podcheck, status
from .errors import NFSUIDError
from .groups import Groups, check_groups
from .identity import (
    IMAGE_ACCOUNT_NAMES,
    Identity,
    check_expected_owner,
    check_ids,
    home_dir,
    unix_name,
)
from .sources import owner_on_hub_mount, supplementary_groups
from .storage import ensure_share

# What a lab of the initcontainer source runs as root, before start.sh switches users.
ADMIN_ONLY = ("image", "cmd", "args", "lifecycle_hooks", "extra_container_config")


class NFSUIDSpawner(KubeSpawner):
    """Run each lab as the uid/gid that owns the user's directory on an NFS share.

    The lab mounts only that directory (by subPath), keeps the share's own
    path, and gets a ``/home/<user>`` symlink to it.
    """

    # --- Storage: how the share reaches the pod ---------------------------------------

    nfs_storage = Enum(
        ["existing-pvc", "inline", "ensure-pv"],
        default_value="existing-pvc",
        config=True,
        help="""
        How the NFS share reaches the pod.

        - ``existing-pvc``: mount the PersistentVolumeClaim :attr:`nfs_pvc_name`, which an
          admin created (a ReadWriteMany claim bound to an NFS PersistentVolume).
        - ``inline``: an ``nfs:`` volume in the pod itself, from :attr:`nfs_server` and
          :attr:`nfs_export_path`. It needs no PV, no PVC and no cluster-wide permission,
          but Kubernetes gives inline NFS volumes no mount options.
        - ``ensure-pv``: the spawner creates the PersistentVolume :attr:`nfs_pv_name` and the
          claim :attr:`nfs_pvc_name` when they do not exist. When they exist (a 409), their NFS
          server, path, claimRef and volumeName must be the ones it would create. A
          PersistentVolume is cluster-scoped, and the Zero-to-JupyterHub hub Role does not
          grant it: this way needs a ClusterRole (see helm-values/manifests/ensure-pv-rbac.yaml).
          Existing objects are never changed or deleted.
        """,
    )
    nfs_server = Unicode(
        "",
        config=True,
        help="The NFS server's hostname or IP, for ``inline`` and ``ensure-pv``. Example: ``aixsky.msxf.local``.",
    )
    nfs_export_path = Unicode(
        "",
        config=True,
        help="The exported path on :attr:`nfs_server`, for ``inline`` and ``ensure-pv``. Example: ``/hpc``.",
    )
    nfs_mount_options = List(
        Unicode(),
        default_value=["vers=3", "rsize=1048576", "wsize=1048576", "hard", "nolock", "proto=tcp"],
        config=True,
        help="""
        Mount options of the PersistentVolume that ``ensure-pv`` creates. Inline NFS volumes
        cannot carry mount options in Kubernetes; with ``existing-pvc`` they are the PV's own.
        """,
    )
    nfs_pvc_name = Unicode(
        "hpc-shared-pvc",
        config=True,
        help="The ReadWriteMany PersistentVolumeClaim of the share, in the spawner's namespace (``existing-pvc``, ``ensure-pv``).",
    )
    nfs_pv_name = Unicode(
        "hpc-pv",
        config=True,
        help="The PersistentVolume that ``ensure-pv`` creates, reserved for :attr:`nfs_pvc_name` by its claimRef.",
    )
    nfs_capacity = Unicode(
        "1Ti",
        config=True,
        help="The capacity written on the PV and PVC that ``ensure-pv`` creates. NFS does not enforce it.",
    )

    # --- Layout: where the user's directory appears --------------------------------------

    share_mount_path = Unicode(
        "/data/hpc",
        config=True,
        help="""
        Where paths on the share appear in the lab. The user's directory is mounted at
        ``<share_mount_path>/<home dir>``, so the paths people use on the cluster keep working.
        Only the user's own directory (and :attr:`extra_share_mounts`) is mounted there,
        never the share root.
        """,
    )
    home_dir_template = Unicode(
        "home/{unescaped_username}",
        config=True,
        help="""
        The user's directory, relative to the share root. ``{unescaped_username}`` is the hub
        username as it is; names with ``/``, ``..``, control characters or a leading ``-`` are
        refused, and the result must stay inside the share. The field must appear exactly
        once, bare (no format spec, conversion or index), as the last whole path component:
        anything else would give two users one directory, or put the lab's directory inside
        one the user owns, where they could swap it for a link between check and mount.
        """,
    )
    home_symlink = Bool(
        True,
        config=True,
        help="""
        Make ``/home/<user>`` a symlink to the user's directory under :attr:`share_mount_path`.
        With False, the directory is mounted at ``/home/<user>`` directly and has no share path.
        ``<user>`` is the hub username, lowercased, with characters other than letters,
        digits, ``.``, ``_`` and ``-`` replaced by ``_`` (what useradd in the image accepts).
        """,
    )
    extra_share_mounts = List(
        Dict(),
        config=True,
        help="""
        More directories of the share to mount read-only in every lab, such as shared datasets:
        a list of ``{"subPath": "datasets", "mountPath": "/data/hpc/datasets"}``. ``subPath`` is
        relative to the share root and may not be empty, ``.`` or contain ``..``: the share
        root is never mounted in a lab.
        """,
    )

    @validate("extra_share_mounts")
    def _valid_extra_share_mounts(self, proposal: dict) -> list:
        for mount in proposal.value:
            manifests.check_extra_share_mount(mount)
        return proposal.value

    # --- Identity: who the lab runs as ----------------------------------------------------

    identity_source = Union(
        [Enum(["initcontainer", "hub"]), Callable()],
        default_value="initcontainer",
        config=True,
        help="""
        Where the lab's uid and gid come from.

        - ``initcontainer``: an initContainer mounts the share root read-only, walks the path
          to the user's directory without following links, reads its
          owner with ``stat`` and checks it. The lab container starts as root with every
          capability dropped but SETUID, SETGID, CHOWN and KILL, no privilege escalation and seccomp
          RuntimeDefault; the image's start.sh then switches to the owner (Jupyter
          docker-stacks images). The hub needs no access to the share.
        - ``hub``: the hub stats the directory on its own read-only mount of the share
          (:attr:`hub_share_path`), in a thread, with :attr:`identity_timeout`. The lab runs
          as the owner from its first instruction and passes the Pod Security Standards
          "restricted" profile.
        - a callable ``(spawner) -> nfsuidspawner.Identity``, sync or async, for sites whose
          truth is a directory service. ``nfsuidspawner.nss_identity`` asks the hub's NSS.
          The lab runs as that identity, and the pod refuses to start if the directory is not
          owned by its uid (checked by the hub too when :attr:`hub_share_path` is set).

        Every source passes the same checks: :attr:`min_uid`, :attr:`min_gid`, never uid or
        gid 0 or 65534, a real directory that is not a symlink.
        """,
    )
    hub_share_path = Unicode(
        "",
        config=True,
        help="""
        Where the share root is mounted in the hub, read-only (for example ``/mnt/hpc`` via
        the chart's hub.extraVolumes). Required by ``identity_source = "hub"``.
        """,
    )
    identity_timeout = Float(
        10.0,
        config=True,
        help="""
        Seconds the hub waits for the stat of a user's directory. A hung NFS server fails
        that one spawn with a clear message; the stat runs in a thread of its own, so the
        hub keeps serving everyone else.
        """,
    )
    min_uid = Integer(
        1000,
        config=True,
        help="The lowest uid a lab may run as. System accounts live below it. 0 and 65534 are always refused.",
    )
    min_gid = Integer(
        1000,
        config=True,
        help="""
        The lowest gid a lab may run as. Lower it (for example to 100, ``users``) if your users'
        directories belong to such a group; 0 and 65534 are always refused.
        """,
    )
    init_image = Unicode(
        "",
        config=True,
        help="""
        The image of the identity initContainer. Empty (the default): the lab's own image,
        which the node pulls for the lab anyway, so a site with a private registry mirrors
        nothing more; with a known identity it is also where the image's /etc/passwd and
        /etc/group are read from. It needs ``sh``, ``stat -c``, ``ln``, ``mkdir``, ``mv``
        and ``cat``.
        """,
    )

    # --- Groups: what else the user's processes are ------------------------------------

    supplemental_groups = Union(
        [Enum(["none", "nss"]), Callable()],
        default_value="none",
        config=True,
        help="""
        The lab's supplementary groups, for group-owned project directories on the share.

        - ``none``: only the directory owner's primary group.
        - ``nss``: the hub's NSS (``os.getgrouplist`` for the hub username, names from
          ``grp``; LDAP or SSSD through nsswitch), in a thread with
          :attr:`identity_timeout`.
        - a callable ``(spawner) -> [(gid, name), ...]``, sync or async.

        Every group passes guard rails like the primary group's: never gid 0 or 65534;
        below :attr:`min_gid` only if :attr:`allowed_low_gids` names it; each gid and name
        once; a name groupadd takes that the image does not have. A group that fails is
        left out, never granted: the hub log and the spawn's progress say which and why.
        The lab's processes end with exactly the owner's uid and gid and these groups, in
        every source. NFS with AUTH_SYS carries only 16 groups per request unless the
        server looks them up itself (``rpc.mountd --manage-gids``).
        """,
    )
    allowed_low_gids = List(
        Integer(),
        config=True,
        help="Supplementary gids below :attr:`min_gid` that may still be granted (0 and 65534 never are).",
    )
    strict_supplemental_groups = Bool(
        False,
        config=True,
        help="""
        Set the pod's ``supplementalGroupsPolicy: Strict`` (Kubernetes 1.35; beta in 1.33,
        with containerd 2.0+ or CRI-O 1.31+), so that the image's /etc/group adds no group to
        a lab that starts as the user (``hub`` and callable sources). Leave it off on
        clusters without it. A lab that starts as root gets its groups from start.sh's sudo
        either way.
        """,
    )
    image_account_names = List(
        Unicode(),
        default_value=list(IMAGE_ACCOUNT_NAMES),
        config=True,
        help="""
        User and group names the lab image already has. A hub user whose account name would
        be one of them is refused: start.sh cannot create it, and a user named ``sudo`` would
        join the sudo group.
        """,
    )
    allowed_images = List(
        Unicode(),
        config=True,
        help="""
        The images a lab of the ``initcontainer`` source may run, as shell-style patterns
        (``quay.io/jupyter/*-notebook:2025-12-31``). Such a lab starts as root, and its image's
        start.sh and hooks run as that root before the switch to the user, so an image that
        a user typed (a profile option's ``unlisted_choice``, or ``apply_user_options``) runs
        only if it matches. By default: the images named in the config itself, ``image``
        and the literal ``image`` overrides of ``profile_list`` and its listed choices (not a
        callable ``profile_list``). In that source a command, args or lifecycle hook that
        came from user input is always refused. The ``hub`` source and callables start the
        lab as the user, so any image may run there.
        """,
    )

    @default("allowed_images")
    def _default_allowed_images(self) -> list[str]:
        images = [self._configured["image"]]
        if isinstance(self.profile_list, list):
            images += podcheck.profile_images(self.profile_list)
        return list(dict.fromkeys(images))

    unsafe_allow_identity_overrides = Bool(
        False,
        config=True,
        help="""
        UNSAFE. Let admin config, profiles and user options set NB_USER, NB_UID, NB_GID,
        NB_GROUP, GRANT_SUDO, CHOWN_HOME(_OPTS) or CHOWN_EXTRA(_OPTS) in the lab's environment,
        or give the lab container ``envFrom`` (which could set any of them unseen).
        By default any of them fails the spawn with an error naming it. GRANT_SUDO=yes gives
        the user root, and root can read every home even under root_squash; CHOWN_HOME on a
        shared NFS home changes ownership on the share. The spawner's own NB_* values still
        win.
        """,
    )

    # --- Glue ---------------------------------------------------------------------------

    identity: Identity | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The admin's own values, before any profile or user option touches the traits.
        self._configured = {name: copy.deepcopy(getattr(self, name)) for name in ADMIN_ONLY}
        self._from_user: dict[str, str] = {}
        # What the spawner decided, for the spawn's progress events.
        self._notes: list[str] = []

    async def run_auth_state_hook(self, auth_state: Any) -> None:
        # The first hook of every start. The Spawner object is reused, and KubeSpawner's
        # profile overrides and user options set traits in place: what an earlier start's
        # user input left in them must not pass for the admin's choice now.
        for name in ADMIN_ONLY:
            setattr(self, name, copy.deepcopy(self._configured[name]))
        self._from_user = {}
        self._notes = []
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

    async def _groups(self, layout: manifests.Layout, identity: Identity | None) -> Groups:
        found = await supplementary_groups(self.supplemental_groups, self, self.identity_timeout)
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
            self._notes.append(f"nfsuid: user {layout.user}: {reason}")
        return groups

    async def progress(self) -> Any:
        # The notes are made while the pod is built, before its first Kubernetes event.
        sent = 0
        async for event in super().progress():
            for note in self._notes[sent:]:
                yield {"progress": event.get("progress", 1), "message": note}
            sent = len(self._notes)
            yield event
        for note in self._notes[sent:]:
            yield {"progress": 99, "message": note}

    async def get_pod_manifest(self) -> Any:
        layout = self._layout()
        identity = await self._known_identity(layout)
        groups = await self._groups(layout, identity)
        layout = dataclasses.replace(layout, groups=groups.granted)
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
            podcheck.check_root_phase(theirs, layout.user, ["/home", layout.share_path])
        share = manifests.share_volume(
            self.nfs_storage, self.nfs_server, self.nfs_export_path, self.nfs_pvc_name
        )
        parts = inject.pod_parts(
            layout,
            share,
            identity,
            self.init_image or self.image,
            self.min_uid,
            self.min_gid,
            self.strict_supplemental_groups,
        )
        self.identity = identity
        return inject.inject(pod, parts, layout.user)

    def start(self) -> asyncio.Future:
        return asyncio.ensure_future(self._start_checked())

    async def _start_checked(self) -> Any:
        self._check_config()
        if self.nfs_storage == "ensure-pv":
            await ensure_share(
                self.api,
                manifests.persistent_volume(
                    self.nfs_pv_name,
                    self.nfs_server,
                    self.nfs_export_path,
                    self.nfs_mount_options,
                    self.nfs_capacity,
                    self.namespace,
                    self.nfs_pvc_name,
                ),
                manifests.persistent_volume_claim(
                    self.nfs_pvc_name, self.namespace, self.nfs_pv_name, self.nfs_capacity
                ),
            )
        kube_start = super().start()
        refused = asyncio.ensure_future(self._init_refusal())
        try:
            await asyncio.wait({kube_start, refused}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            kube_start.cancel()
            refused.cancel()
            raise
        if kube_start.done():
            refused.cancel()
            url = kube_start.result()
            self._record_resolved_identity()
            return url
        kube_start.cancel()
        reason = refused.result()
        await self.stop(now=True)
        raise NFSUIDError(reason)

    def _reflected_pod(self) -> dict | None:
        reflector = self.pod_reflector
        return reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None

    async def _init_refusal(self) -> str:
        """Wait until the identity initContainer fails, and say why."""
        while True:
            reason = status.init_failure(self._reflected_pod())
            if reason:
                if not reason.startswith("nfsuid:"):
                    reason = f"nfsuid: user {self.user.name}: {reason}"
                return reason
            await asyncio.sleep(0.5)

    def _record_resolved_identity(self) -> None:
        found = status.resolved_identity(self._reflected_pod())
        if found:
            self.identity = Identity(*found)

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

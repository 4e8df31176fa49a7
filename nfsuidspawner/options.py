"""NFSUIDSpawner's own options: each traitlet's help is its documentation.

The spawner (:mod:`nfsuidspawner.spawner`) inherits them from :class:`NFSUIDOptions`, so
they are set as ``c.NFSUIDSpawner.<name>`` like any of its traits.
"""

from __future__ import annotations

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
    validate,
)
from traitlets.config import Configurable

from . import manifests
from .identity import IMAGE_ACCOUNT_NAMES


class NFSUIDOptions(Configurable):
    """The options NFSUIDSpawner adds to KubeSpawner's."""

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
        More directories of the share to mount in every lab, such as shared datasets: a list
        of ``{"subPath": "datasets", "mountPath": "/data/hpc/datasets"}``, read-only unless the
        entry says ``"readOnly": False`` (a project directory to work in; access is then what
        NFS permissions give the lab's uid and groups, see :attr:`supplemental_groups`).
        ``subPath`` is relative to the share root and may not be empty, ``.`` or contain
        ``..``: the share root is never mounted in a lab. ``mountPath`` may not lie inside
        ``/home`` or the user's directory, and a writable one may not cover a place where the
        initcontainer source's root phase finds code.
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
        Seconds the hub waits for the stat of a user's directory, and for the NSS lookup of
        the user's groups (``supplemental_groups = "nss"``). A hung NFS server or directory
        service fails that one spawn with a clear message; the call runs in a thread of its
        own, so the hub keeps serving everyone else.
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
        The lab's processes end with the owner's uid and gid and these groups, in every
        source, and no other: except that a lab started as the user (``hub`` and callables)
        also gets, from the container runtime, the groups the image's own /etc/group gives
        its uid (uid 1000 is jovyan, in group 100, in docker-stacks images), unless
        :attr:`strict_supplemental_groups` is on. NFS with AUTH_SYS carries only 16 groups
        per request unless the server looks them up itself (``rpc.mountd --manage-gids``).
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

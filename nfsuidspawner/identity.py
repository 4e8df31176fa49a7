"""Who a user is on the share: the guard rails every identity passes through.

Everything here is pure. The same checks run in three places:
the hub (``identity_source = "hub"``), the identity initContainer (its shell
script is generated from :data:`REFUSALS` in :mod:`nfsuidspawner.script`), and
on whatever a callable identity source returns.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import NFSUIDError

NOBODY = 65534

# Users and groups that a Jupyter docker-stacks image (Ubuntu 24.04 based)
# already has. start.sh's useradd/groupadd fail on these names, and a lab
# whose group is "sudo" or "adm" would join that group.
IMAGE_ACCOUNT_NAMES = (
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "_apt",
    "nobody",
    "ubuntu",
    "adm",
    "tty",
    "disk",
    "kmem",
    "dialout",
    "fax",
    "voice",
    "cdrom",
    "floppy",
    "tape",
    "sudo",
    "audio",
    "dip",
    "operator",
    "src",
    "shadow",
    "utmp",
    "video",
    "sasl",
    "plugdev",
    "staff",
    "users",
    "nogroup",
)

# Why a directory is refused, and what the admin does about it. The initContainer's
# script is generated from this table, so the hub and the pod say the same words.
# Fields: {uid} {gid} {min_uid} {min_gid} {expected_uid}.
REFUSALS: dict[str, tuple[str, str]] = {
    "missing": (
        "does not exist",
        "create it on the NFS server, owned by the user's uid and gid",
    ),
    "symlink": (
        "is a symlink",
        "replace the symlink by the real directory; links are refused so that a lab"
        " can never be pointed at someone else's data",
    ),
    "unsearchable": (
        "cannot be searched by the identity check",
        "let every uid search it (chmod o+x) on the NFS server; the check runs as uid 65534"
        " (nobody) or as the lab's own uid",
    ),
    "not_directory": (
        "is not a directory",
        "make it the user's own directory on the NFS server",
    ),
    "root": (
        "is owned by uid 0 (root)",
        "chown it to the user's uid and gid on the NFS server; labs never run as root"
        " (a kubelet creates a missing subPath as root: an older setup may have made it)",
    ),
    "nobody": (
        "is owned by uid 65534 (nobody)",
        "NFSv4 id mapping failed or root_squash created it: check the idmapd Domain on the"
        " server and the nodes (or use NFSv3), and chown it to the user's uid",
    ),
    "low_uid": (
        "is owned by uid {uid}, below min_uid {min_uid}",
        "chown it to the user's uid, or lower c.NFSUIDSpawner.min_uid if {uid} is a real user",
    ),
    "root_group": (
        "has group gid 0 (root)",
        "chgrp it to the user's group on the NFS server",
    ),
    "nobody_group": (
        "has group gid 65534 (nogroup)",
        "NFSv4 id mapping failed: check the idmapd Domain, and chgrp it to the user's group",
    ),
    "low_gid": (
        "has group gid {gid}, below min_gid {min_gid}",
        "chgrp it to the user's group, or lower c.NFSUIDSpawner.min_gid if {gid} is a real group",
    ),
    "wrong_owner": (
        "is owned by uid {uid}, but the user is uid {expected_uid}",
        "chown it to the user's uid, or fix the identity source (or the hub's NSS, which"
        " gives the groups); a lab only runs as the owner of its directory",
    ),
}


def refusal(user: str, path: str, reason: str, **fields: int) -> NFSUIDError:
    problem, fix = REFUSALS[reason]
    return NFSUIDError(
        f"nfsuid: user {user}: {path} {problem.format(**fields)}. Fix: {fix.format(**fields)}"
    )


@dataclass(frozen=True)
class Identity:
    """The uid and gid a lab runs as."""

    uid: int
    gid: int


def check_ids(user: str, path: str, uid: int, gid: int, min_uid: int, min_gid: int) -> Identity:
    """Refuse root, nobody and ids below the configured minimums."""
    fields = dict(uid=uid, gid=gid, min_uid=min_uid, min_gid=min_gid)
    if uid == 0:
        raise refusal(user, path, "root", **fields)
    if uid == NOBODY:
        raise refusal(user, path, "nobody", **fields)
    if uid < min_uid:
        raise refusal(user, path, "low_uid", **fields)
    if gid == 0:
        raise refusal(user, path, "root_group", **fields)
    if gid == NOBODY:
        raise refusal(user, path, "nobody_group", **fields)
    if gid < min_gid:
        raise refusal(user, path, "low_gid", **fields)
    return Identity(uid, gid)


def check_type(user: str, path: str, kind: str) -> None:
    """Refuse what is not a real directory. `kind` is "missing", "symlink", "directory" or "other"."""
    if kind == "missing":
        raise refusal(user, path, "missing")
    if kind == "symlink":
        raise refusal(user, path, "symlink")
    if kind != "directory":
        raise refusal(user, path, "not_directory")


def check_expected_owner(user: str, path: str, owner_uid: int, expected: Identity) -> None:
    """A lab runs as the owner of its directory, whatever the identity source says."""
    if owner_uid != expected.uid:
        raise refusal(user, path, "wrong_owner", uid=owner_uid, expected_uid=expected.uid)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


USERNAME_FIELD = "unescaped_username"
_TEMPLATE_FIX = (
    "Fix: end c.NFSUIDSpawner.home_dir_template with the whole path component"
    " {unescaped_username}, as in 'home/{unescaped_username}'"
)


def check_template(template: str) -> str | None:
    """Why `template` does not give each user a directory of their own, or None.

    `{unescaped_username}` must appear exactly once, bare (no format spec, conversion,
    index or attribute), as the last whole path component. A prefix like `home` or
    `{unescaped_username[0]}` would put several users in one directory. A component after
    it would be a path inside a directory the user owns, which they could swap for a
    symlink to someone else's directory between the check and the mount.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        return f"is not a valid template ({e})"
    fields = [i for i, (_, name, _, _) in enumerate(parsed) if name is not None]
    if any(parsed[i][1] != USERNAME_FIELD for i in fields):
        return "uses a field other than {unescaped_username}"
    if len(fields) != 1:
        return "must contain {unescaped_username} exactly once"
    at = fields[0]
    _, _, spec, conversion = parsed[at]
    if spec or conversion:
        return "formats {unescaped_username} (a format spec or conversion)"
    prefix = "".join(text for text, *_ in parsed[: at + 1])
    trailing = "".join(text for text, *_ in parsed[at + 1 :])
    if (prefix and not prefix.endswith("/")) or trailing:
        return "does not end with {unescaped_username} as a whole path component"
    return None


def home_dir(template: str, username: str) -> str:
    """The user's directory relative to the share root, from `home_dir_template`.

    The template and the username are checked before one is put into the other, and
    the result must stay inside the share.
    """
    problem = check_template(template)
    if problem:
        raise NFSUIDError(
            f"nfsuid: user {username}: home_dir_template {template!r} {problem}, so it does"
            f" not give each user a directory of their own. {_TEMPLATE_FIX}"
        )
    problem = None
    if not username:
        problem = "is empty"
    elif "/" in username:
        problem = "contains '/'"
    elif username in (".", "..") or ".." in username:
        problem = "contains '..'"
    elif _CONTROL.search(username):
        problem = "contains a control character"
    elif username.startswith("-"):
        problem = "starts with '-'"
    if problem:
        raise NFSUIDError(
            f"nfsuid: user {username!r}: the name {problem}, so it cannot name a directory"
            f" on the share (home_dir_template {template!r}). Fix: rename the user, or"
            " normalize names in the authenticator"
        )
    relative = template.format(unescaped_username=username)
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise NFSUIDError(
            f"nfsuid: user {username}: home_dir_template {template!r} gives {relative!r},"
            " which is not inside the share. Fix: make the template a relative path"
            " such as 'home/{unescaped_username}'"
        )
    return str(path)


_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def unix_name(username: str, reserved: list[str] | tuple[str, ...]) -> str:
    """The NB_USER (and NB_GROUP) name for a hub user.

    useradd in the docker-stacks images takes lowercase names of at most 32
    characters; other characters become "_". A name the image already has is
    refused rather than renamed, so that nobody can become "sudo" or "adm".
    """
    name = re.sub(r"[^a-z0-9_.-]", "_", username.lower())[:32]
    if not _UNIX_NAME.fullmatch(name):
        name = ("u" + name)[:32]
    if name in reserved:
        raise NFSUIDError(
            f"nfsuid: user {username}: the account name {name!r} is one the image already"
            " has (c.NFSUIDSpawner.image_account_names), so the lab cannot be given it."
            " Fix: rename the user"
        )
    return name

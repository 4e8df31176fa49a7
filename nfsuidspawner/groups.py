"""The lab's supplementary groups: the guard rails every group passes through.

Pure. A group that fails is left out, never granted, and the reason is kept for the hub's
log and the spawn's progress events. The lab then has exactly the groups that pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .identity import NOBODY

# What groupadd in the docker-stacks images (Ubuntu) accepts, and what a shell line may
# carry unquoted: the initContainer writes these names into a root hook and /etc/group.
_GROUP_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Group:
    """A supplementary group of the lab's user."""

    gid: int
    name: str


@dataclass(frozen=True)
class Groups:
    """The groups a lab gets, and those left out with why."""

    granted: tuple[Group, ...]
    refused: tuple[str, ...]


def check_groups(
    found: Iterable[tuple[int, str]],
    primary_gid: int | None,
    own_name: str,
    min_gid: int,
    allowed_low_gids: Iterable[int],
    reserved_names: Iterable[str],
) -> Groups:
    """Keep the groups that pass; say why each other one does not.

    Never gid 0 or 65534; below `min_gid` only when `allowed_low_gids` names it; each gid
    and name once; a name groupadd takes, that the image does not already have and that is
    not the user's own group name. The primary group is the user's already, not a
    supplementary one, and is dropped without a word: by gid, or by name (the hub does not
    know the primary gid before an initContainer finds it).
    """
    allowed, reserved = set(allowed_low_gids), set(reserved_names)
    granted: list[Group] = []
    refused: list[str] = []
    gids: set[int] = set()
    names: set[str] = set()
    for gid, name in found:
        if gid == primary_gid or name == own_name:
            continue
        why = None
        if gid in (0, NOBODY):
            why = f"gid {gid} is never granted"
        elif gid < min_gid and gid not in allowed:
            why = f"gid {gid} is below min_gid {min_gid} (list it in allowed_low_gids to grant it)"
        elif gid in gids or name in names:
            why = "it is listed twice"
        elif not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            why = f"{name!r} is not a group name groupadd takes"
        elif name in reserved:
            why = f"the image already has a group named {name!r}"
        if why:
            refused.append(f"group {name} ({gid}) is left out: {why}")
            continue
        granted.append(Group(int(gid), name))
        gids.add(gid)
        names.add(name)
    return Groups(tuple(granted), tuple(refused))

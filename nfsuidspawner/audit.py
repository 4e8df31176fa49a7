"""`nfsuidspawner audit`: who each user's lab would run as, before anyone logs in.

For each user it asks the spawner itself, built from the site's config: the same guard
rails and the same walk of the share (with the hub source's timeout, in threads), so a
verdict is the spawner's own words. It only reads the share: lstat and listdir.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
from collections import Counter
from pathlib import PurePosixPath
from typing import TextIO

from traitlets.config import Config

from .errors import NFSUIDError
from .identity import REFUSALS, USERNAME_FIELD
from .offline import spawner_for
from .sources import _walk, in_daemon_thread

# How many users are checked at once; each stat has its own timeout.
CONCURRENCY = 32


@dataclasses.dataclass
class Verdict:
    user: str
    directory: str
    owner: str
    ok: bool
    verdict: str
    reason: str
    groups: list[str]
    message: str = ""


def problem(message: str, directory: str) -> str:
    """A refusal without its "nfsuid: user U:" prefix, the user's path and its fix."""
    text = re.sub(r"^nfsuid: user .*?: ", "", message).split(". Fix:")[0]
    return text.removeprefix(directory + " ")


def reason_of(message: str) -> str:
    """A refusal's kind, for the summary: the REFUSALS key, or a few plain words."""
    for key, (problem, _) in REFUSALS.items():
        pattern = re.escape(problem)
        pattern = re.sub(r"\\\{\w+\\\}", r"\\S+", pattern)
        if re.search(rf" {pattern}\. Fix:", message):
            return key
    if "did not answer within" in message:
        return "unreachable"
    if "the name" in message or "the account name" in message:
        return "name"
    return "template" if "home_dir_template" in message else "other"


async def _owner(path: str, hub_root: str, home_dir: str, timeout: float) -> str:
    try:
        _, kind, uid, gid = await in_daemon_thread(path, lambda: _walk(hub_root, home_dir), timeout)
    except (TimeoutError, OSError):
        return "?"
    return {"missing": "-", "symlink": "symlink"}.get(kind, f"{uid}:{gid}")


async def audit_user(config: Config, user: str, share: str) -> Verdict:
    """The verdict a real spawn would give `user`, found on the hub's view `share`."""
    spawner = spawner_for(config, user)
    # The initContainer's script says what the hub source's walk says (one table).
    if spawner.identity_source == "initcontainer":
        spawner.identity_source = "hub"
    spawner.hub_share_path = share
    directory = owner = "?"
    groups: list[str] = []
    try:
        layout = spawner._layout()
        directory = layout.share_path
        path = f"{share.rstrip('/')}/{layout.home_dir}"
        # Started first, so that the spawner's own check joins the same stat.
        shown = asyncio.ensure_future(
            _owner(path, share, layout.home_dir, spawner.identity_timeout)
        )
        try:
            identity = await spawner._known_identity(layout)
            found, _ = await spawner._groups(layout, identity)
        finally:
            owner = await shown
        groups = [f"{g.name}({g.gid})" for g in found.granted] + list(found.refused)
    except NFSUIDError as e:
        message = str(e)
        reason = reason_of(message)
        verdict = "unreachable" if reason == "unreachable" else "refused"
        return Verdict(
            user,
            directory,
            owner,
            False,
            f"{verdict}: {problem(message, directory)}",
            reason,
            groups,
            message,
        )
    return Verdict(
        user, directory, owner, True, f"runs as {identity.uid}:{identity.gid}", "", groups
    )


async def users_in_share(template: str, share: str, timeout: float) -> list[str]:
    """Every entry of the directory that holds the users' directories."""
    parent = os.path.join(share, str(PurePosixPath(template.split("{" + USERNAME_FIELD + "}")[0])))
    try:
        return sorted(await in_daemon_thread(parent, lambda: os.listdir(parent), timeout))
    except TimeoutError:
        raise NFSUIDError(
            f"nfsuid: listing {parent} did not answer within {timeout:g} s. Fix: check the NFS"
            " server and this machine's mount of the share, or name the users with --user"
        ) from None


async def audit(
    config: Config, users: list[str], share: str, progress: TextIO | None = None
) -> list[Verdict]:
    """Audit `users` concurrently, showing progress on `progress` (a terminal)."""
    limit = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(user: str) -> Verdict:
        nonlocal done
        async with limit:
            verdict = await audit_user(config, user, share)
        done += 1
        if progress:
            progress.write(f"\rchecked {done}/{len(users)}")
            progress.flush()
        return verdict

    verdicts = await asyncio.gather(*(one(user) for user in users))
    if progress:
        progress.write("\n")
    return list(verdicts)


def summary(verdicts: list[Verdict]) -> str:
    ok = sum(v.ok for v in verdicts)
    refused = Counter(v.reason for v in verdicts if not v.ok)
    kinds = ", ".join(f"{n} {reason}" for reason, n in sorted(refused.items()))
    return f"{ok} ok, {len(verdicts) - ok} refused" + (f" ({kinds})" if kinds else "")


def table(verdicts: list[Verdict], with_groups: bool) -> str:
    rows = [["USER", "DIRECTORY", "OWNER", "VERDICT"] + (["GROUPS"] if with_groups else [])]
    for v in verdicts:
        rows.append(
            [v.user, v.directory, v.owner, v.verdict]
            + ([", ".join(v.groups) or "-"] if with_groups else [])
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    )


def report(verdicts: list[Verdict], as_json: bool, with_groups: bool, out: TextIO) -> int:
    """Print the verdicts; the exit status is 1 when any user is refused."""
    if as_json:
        json.dump([dataclasses.asdict(v) for v in verdicts], out, indent=1)
        out.write("\n")
    else:
        out.write(table(verdicts, with_groups) + "\n")
    print(summary(verdicts), file=sys.stderr if as_json else out)
    return 0 if all(v.ok for v in verdicts) else 1

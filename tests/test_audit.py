"""`nfsuidspawner audit`: each user's verdict is the one a real spawn gives, and the share is
only read.

The share holds the awkward cases: root-owned, nobody-owned, low-uid, missing, symlinked, and
names that differ by a character or a dot. For every case the audit's verdict is compared
with get_pod_manifest() (the hub source) and with the identity initContainer's script.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from nfsuidspawner import NFSUIDError
from nfsuidspawner.audit import audit, audit_user, report, summary, users_in_share
from nfsuidspawner.cli import main
from nfsuidspawner.script import identity_script

from .conftest import make_homes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chowns a tree to other uids")

OWNERS = {
    "alice": (2001, 3001),
    "alice2": (2005, 3005),
    "a.b": (2010, 3010),
    "aXb": (2011, 3011),
    "rooted": (0, 0),
    "squashed": (65534, 65534),
    "low": (500, 3001),
}
USERS = [*OWNERS, "missing", "linked"]


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    make_homes(root / "home", OWNERS)
    (root / "home" / "linked").symlink_to("alice")
    return root


def config(source: str = "initcontainer", **more: object) -> Config:
    return Config({"NFSUIDSpawner": {"identity_source": source, **more}})


def tree(root: Path) -> list[tuple[str, int, int, int]]:
    return sorted(
        (str(p), p.lstat().st_mtime_ns, p.lstat().st_uid, p.lstat().st_mode)
        for p in root.rglob("*")
    )


def script_says(share: Path, user: str, tmp_path: Path) -> str:
    """What the identity initContainer prints for `user` on this share."""
    log = tmp_path / f"log-{user}"
    env = {
        "PATH": os.environ["PATH"],
        "NFSUID_USER": user,
        "NFSUID_SHARE": str(share),
        "NFSUID_HOME_DIR": f"home/{user}",
        "NFSUID_MOUNT_PATH": "/data/hpc",
        "NFSUID_PATH": f"/data/hpc/home/{user}",
        "NFSUID_MIN_UID": "1000",
        "NFSUID_MIN_GID": "1000",
        "NFSUID_RUN": str(tmp_path),
        "NFSUID_NB_USER": "x",
        "NFSUID_NB_GROUP": "x",
        "NFSUID_HOME": "/home/x",
        "NFSUID_TERMINATION_LOG": str(log),
    }
    subprocess.run(["sh", "-c", identity_script()], env=env, capture_output=True, timeout=30)
    return log.read_text().strip()


@pytest.mark.parametrize("user", USERS)
async def test_the_verdict_is_what_a_spawn_and_the_init_container_say(
    share, user, make_spawner, tmp_path
) -> None:
    verdict = await audit_user(config(), user, str(share))

    spawner = make_spawner({"identity_source": "hub", "hub_share_path": str(share)}, username=user)
    try:
        pod = await spawner.get_pod_manifest()
        said = f"runs as {pod.spec.containers[0].security_context.run_as_user}:"
        assert verdict.ok and verdict.verdict.startswith(said)
        assert script_says(share, user, tmp_path).endswith(verdict.verdict)
    except NFSUIDError as refusal:
        assert verdict.message == str(refusal)
        assert verdict.verdict.startswith("refused: ")
        assert script_says(share, user, tmp_path) == str(refusal)


async def test_the_audit_leaves_the_share_unchanged(share) -> None:
    before = tree(share)

    await audit(config(), USERS, str(share))

    assert tree(share) == before


async def test_every_entry_of_the_home_directory_is_audited(share) -> None:
    users = await users_in_share("home/{unescaped_username}", str(share), 5)

    assert users == sorted(OWNERS.keys() | {"linked"})


async def test_the_report_counts_refusals_by_reason_and_exits_1(share) -> None:
    verdicts = await audit(config(), USERS, str(share))
    out = io.StringIO()

    status = report(verdicts, as_json=False, with_groups=False, out=out)

    assert status == 1
    assert out.getvalue().splitlines()[-1] == summary(verdicts)
    assert summary(verdicts) == (
        "4 ok, 5 refused (1 low_uid, 1 missing, 1 nobody, 1 root, 1 symlink)"
    )


async def test_json_lists_each_user_with_owner_and_verdict(share) -> None:
    verdicts = await audit(config(), ["alice", "rooted"], str(share))
    out = io.StringIO()

    report(verdicts, as_json=True, with_groups=False, out=out)

    alice, rooted = json.loads(out.getvalue())
    assert (alice["owner"], alice["verdict"], alice["ok"]) == (
        "2001:3001",
        "runs as 2001:3001",
        True,
    )
    assert (rooted["owner"], rooted["reason"], rooted["ok"]) == ("0:0", "root", False)


async def test_a_share_that_is_all_fine_exits_0(share) -> None:
    verdicts = await audit(config(), ["alice", "a.b"], str(share))

    assert report(verdicts, as_json=False, with_groups=False, out=io.StringIO()) == 0


async def test_groups_are_listed_with_the_ones_left_out(share) -> None:
    groups = config(supplemental_groups=lambda spawner: [(5001, "p1"), (0, "wheel")])
    [verdict] = await audit(groups, ["alice"], str(share))

    assert verdict.groups == ["p1(5001)", "group wheel (0) is left out: gid 0 is never granted"]


async def test_a_hung_server_is_reported_unreachable_within_the_timeout(hung_share) -> None:
    began = time.monotonic()

    [verdict] = await audit(config(identity_timeout=1.0), ["alice"], hung_share)

    assert time.monotonic() - began < 1.0 + 3.0
    assert verdict.verdict.startswith("unreachable: stat of")
    assert verdict.message.startswith("nfsuid: user alice: stat of")
    assert verdict.reason == "unreachable"


def write_config(tmp_path: Path, share: Path) -> str:
    path = tmp_path / "site_config.py"
    path.write_text(
        "c = get_config()\n"
        "c.NFSUIDSpawner.identity_source = 'initcontainer'\n"
        f"c.NFSUIDSpawner.hub_share_path = {str(share)!r}\n"
    )
    return str(path)


def test_the_command_lists_every_user_and_exits_1_when_any_is_refused(
    share, tmp_path, capsys
) -> None:
    before = tree(share)

    status = main(["audit", "--config", write_config(tmp_path, share)])

    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[0].split() == ["USER", "DIRECTORY", "OWNER", "VERDICT"]
    assert [line.split()[0] for line in out[1:-1]] == sorted(OWNERS.keys() | {"linked"})
    assert out[-1] == "4 ok, 4 refused (1 low_uid, 1 nobody, 1 root, 1 symlink)"
    assert tree(share) == before


def test_the_command_takes_users_from_a_file_and_prints_json(share, tmp_path, capsys) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\n\na.b\n")

    status = main(["audit", "--share", str(share), "--users-file", str(users), "--json"])

    assert status == 0
    assert [v["verdict"] for v in json.loads(capsys.readouterr().out)] == [
        "runs as 2001:3001",
        "runs as 2010:3010",
    ]


def test_the_command_without_a_share_says_what_to_give(capsys) -> None:
    assert main(["audit", "--user", "alice"]) == 2
    assert "Give --share PATH" in capsys.readouterr().err

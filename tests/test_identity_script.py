"""The identity initContainer's script, run for real by bash against a tree chowned as root.

Each refusal must be the exact line the hub would raise for the same directory.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from nfsuidspawner.identity import refusal
from nfsuidspawner.script import (
    GROUP,
    GROUPS_HOOK_NAME,
    HOOK_NAME,
    PASSWD,
    identity_script,
    parse_resolved,
)

from .conftest import make_homes, run_with_own_etc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chowns a tree to other uids")

OWNERS = {
    "alice": (2001, 3001),
    "alice2": (2005, 3005),
    "a.b": (2010, 3010),
    "aXb": (2011, 3011),
    "Alice.Smith": (2020, 3020),
    "qiang.guo03": (2003, 3003),
    "rooted": (0, 0),
    "low": (500, 3001),
    "lowgroup": (2030, 50),
    "nobody": (65534, 65534),
}


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """The share root: home/<name> for OWNERS, an alias link, a file, and a linked parent."""
    root = tmp_path / "share"
    home = root / "home"
    make_homes(home, OWNERS)
    (home / "linked").symlink_to(home / "alice")
    (home / "asmith").symlink_to("bob")  # an alias after a rename, as HPC sites keep them
    make_homes(home, {"bob": (2002, 3002)})
    (home / "plainfile").write_text("")
    (root / "homes").symlink_to("home")
    (root / "locked").mkdir(mode=0o700)
    make_homes(root / "locked", {"carol": (2003, 3003)})
    return root


def script_env(share: Path, name: str, home_dir: str | None = None) -> dict[str, str]:
    """The environment the initContainer gets, with the share root mounted at `share`."""
    home_dir = home_dir or f"home/{name}"
    return {
        "PATH": os.environ["PATH"],
        "NFSUID_USER": name,
        "NFSUID_SHARE": str(share),
        "NFSUID_HOME_DIR": home_dir,
        "NFSUID_MOUNT_PATH": "/data/hpc",
        "NFSUID_PATH": f"/data/hpc/{home_dir}",
        "NFSUID_MIN_UID": "1000",
        "NFSUID_MIN_GID": "1000",
    }


def run_script(
    share: Path, name: str, tmp_path: Path, as_uid: int | None = None, **extra: str
) -> subprocess.CompletedProcess:
    run = tmp_path / "run"
    homes = tmp_path / "homes"
    run.mkdir(exist_ok=True)
    homes.mkdir(exist_ok=True)
    env = (
        script_env(share, name)
        | {
            "NFSUID_RUN": str(run),
            "NFSUID_HOOKS": "1",
            "NFSUID_NB_USER": name.lower(),
            "NFSUID_NB_GROUP": name.lower(),
            "NFSUID_HOME": f"/home/{name.lower()}",
            "NFSUID_HOME_LINK": str(homes / name.lower()),
            "NFSUID_TERMINATION_LOG": str(tmp_path / "termination-log"),
        }
        | extra
    )
    command = ["bash", "-c", identity_script()]
    if as_uid is not None:
        command = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def expected_refusal(name: str, reason: str, path: str | None = None, **fields: int) -> str:
    return str(refusal(name, path or f"/data/hpc/home/{name}", reason, **fields))


@pytest.mark.parametrize("name", ["alice", "a.b", "Alice.Smith", "qiang.guo03"])
def test_owner_becomes_the_identity_hook(share: Path, tmp_path: Path, name: str) -> None:
    result = run_script(share, name, tmp_path)

    assert result.returncode == 0, result.stderr
    uid, gid = OWNERS[name]
    hook = (tmp_path / "run" / HOOK_NAME).read_text()
    lower = name.lower()
    assert hook == f"export NB_USER={lower} NB_UID={uid} NB_GID={gid} NB_GROUP={lower}\n"
    assert parse_resolved((tmp_path / "termination-log").read_text()) == (uid, gid)


def test_groups_hook_takes_away_supplementary_groups(share: Path, tmp_path: Path) -> None:
    """start.sh's useradd adds group 100 (users); the lab keeps only what the hub granted."""
    run_script(share, "alice", tmp_path)
    hook = tmp_path / "run" / GROUPS_HOOK_NAME

    assert hook.read_text().splitlines()[0] == 'usermod -G "" "$NB_USER" || exit 1'
    assert source_groups_hook(hook, tmp_path, "3001 100") != 0
    assert source_groups_hook(hook, tmp_path, "3001") == 0


def test_groups_hook_creates_and_grants_exactly_the_granted_groups(
    share: Path, tmp_path: Path
) -> None:
    """3001 is alice's primary gid: it is her group already, not a supplementary one."""
    run_script(share, "alice", tmp_path, NFSUID_GROUPS="5001:p1 3001:alice 5002:p2")

    lines = (tmp_path / "run" / GROUPS_HOOK_NAME).read_text().splitlines()
    assert lines[:3] == [
        "groupdel p1 2>/dev/null; groupadd --non-unique --gid 5001 p1 || exit 1",
        "groupdel p2 2>/dev/null; groupadd --non-unique --gid 5002 p2 || exit 1",
        'usermod -G "p1,p2" "$NB_USER" || exit 1',
    ]
    assert "for g in 3001 5001 5002;" in lines[3]


def source_groups_hook(hook: Path, tmp_path: Path, groups_of_user: str, fail: str = "") -> int:
    """Source the hook in bash as start.sh would, with groupadd, groupdel and usermod
    stubbed (`fail` names one that fails) and `id -G` answering `groups_of_user`."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("groupadd", "groupdel", "usermod"):
        (bin_dir / tool).write_text(f"#!/bin/sh\nexit {1 if tool == fail else 0}\n")
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {groups_of_user}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = f'NB_USER=alice; source {hook}; echo "start.sh goes on"'
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    return result.returncode if "start.sh goes on" not in result.stdout else 0


@pytest.mark.parametrize(
    ("groups_of_user", "fail", "goes_on"),
    [
        ("3001 5001", "", True),
        ("3001 5001 100", "", False),
        ("3001", "", False),
        ("3001 5001", "groupadd", False),
        ("3001 5001", "usermod", False),
    ],
    ids=[
        "exactly-granted",
        "kept-group-100",
        "lost-a-granted-one",
        "groupadd-fails",
        "usermod-fails",
    ],
)
def test_the_groups_hook_ends_start_sh_unless_the_groups_are_exact(
    share: Path, tmp_path: Path, groups_of_user: str, fail: str, goes_on: bool
) -> None:
    """The image's run-hooks.sh logs a failed hook and goes on: a hook that merely failed
    would leave the lab in group 100 (start.sh's useradd) and without its project."""
    run_script(share, "alice", tmp_path, NFSUID_GROUPS="5001:p1")

    code = source_groups_hook(tmp_path / "run" / GROUPS_HOOK_NAME, tmp_path, groups_of_user, fail)

    assert (code == 0) is goes_on


IMAGE_PASSWD = "root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"
IMAGE_GROUP = "root:x:0:\nusers:x:100:\np1:x:4999:\nold:x:5002:\n"


def run_with_image_etc(share: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    """The script with a known identity, reading an image's /etc."""
    run = tmp_path / "run"
    run.mkdir()
    env = (
        script_env(share, "alice")
        | {
            "NFSUID_RUN": str(run),
            "NFSUID_ETC": "1",
            "NFSUID_EXPECT_UID": "2001",
            "NFSUID_NB_USER": "alice",
            "NFSUID_NB_GROUP": "alice",
            "NFSUID_HOME": "/home/alice",
            "NFSUID_TERMINATION_LOG": str(tmp_path / "termination-log"),
        }
        | extra
    )
    argv = ["sh", "-c", identity_script()]
    return run_with_own_etc(tmp_path, IMAGE_PASSWD, IMAGE_GROUP, argv, env)


def test_known_identity_gets_the_images_accounts_plus_its_own(share: Path, tmp_path: Path) -> None:
    result = run_with_image_etc(share, tmp_path, NFSUID_GROUPS="5001:p1 5002:p2")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / PASSWD).read_text() == (
        IMAGE_PASSWD + "alice:x:2001:3001::/home/alice:/bin/bash\n"
    )
    # p1 and p2 replace the image's groups of the same name or gid; alice's own is added.
    assert (tmp_path / "run" / GROUP).read_text() == (
        "root:x:0:\nusers:x:100:\nalice:x:3001:\np1:x:5001:alice\np2:x:5002:alice\n"
    )


def test_an_image_account_with_the_users_uid_gives_way(share: Path, tmp_path: Path) -> None:
    """A user whose uid is the image's jovyan (1000) must be named as the user."""
    (share / "home" / "alice").chmod(0o700)
    os.chown(share / "home" / "alice", 1000, 3001)
    result = run_with_image_etc(share, tmp_path, NFSUID_MIN_UID="1000", NFSUID_EXPECT_UID="1000")

    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "run" / PASSWD).read_text()
    assert "jovyan" not in passwd and passwd.endswith("alice:x:1000:3001::/home/alice:/bin/bash\n")


def test_terminals_open_in_the_home(share: Path, tmp_path: Path) -> None:
    """The lab's working dir is /; JupyterLab opens a terminal in the server's own."""
    run_script(share, "alice", tmp_path)

    config = (tmp_path / "run" / "jupyter" / "jupyter_server_config.py").read_text()
    assert config == 'import os\nos.chdir(os.path.expanduser("~"))\n'


def test_home_link_points_at_the_share_path(share: Path, tmp_path: Path) -> None:
    run_script(share, "alice", tmp_path)

    assert os.readlink(tmp_path / "homes" / "alice") == "/data/hpc/home/alice"


@pytest.mark.parametrize(
    ("name", "neighbour"), [("alice", "alice2"), ("a.b", "aXb")], ids=["prefix", "dot-not-regex"]
)
def test_similar_names_do_not_match(share: Path, tmp_path: Path, name: str, neighbour: str) -> None:
    result = run_script(share, name, tmp_path)

    assert parse_resolved(result.stdout) == OWNERS[name] != OWNERS[neighbour]


@pytest.mark.parametrize(
    ("name", "reason", "fields"),
    [
        ("missing", "missing", {}),
        ("rooted", "root", {}),
        ("low", "low_uid", {"uid": 500, "min_uid": 1000}),
        ("lowgroup", "low_gid", {"gid": 50, "min_gid": 1000}),
        ("linked", "symlink", {}),
        ("nobody", "nobody", {}),
        ("plainfile", "not_directory", {}),
    ],
)
def test_refusal_is_the_hubs_exact_line(
    share: Path, tmp_path: Path, name: str, reason: str, fields: dict[str, int]
) -> None:
    result = run_script(share, name, tmp_path)

    line = expected_refusal(name, reason, **fields)
    assert result.returncode == 1
    assert (tmp_path / "termination-log").read_text() == line + "\n"
    assert result.stderr == line + "\n"
    assert not (tmp_path / "run" / HOOK_NAME).exists()
    assert not (tmp_path / "homes" / name).exists()


def test_expected_uid_must_own_the_directory(share: Path, tmp_path: Path) -> None:
    result = run_script(share, "alice", tmp_path, NFSUID_EXPECT_UID="2002")

    assert result.returncode == 1
    assert result.stderr.strip() == expected_refusal(
        "alice", "wrong_owner", uid=2001, expected_uid=2002
    )


def test_expected_uid_that_owns_the_directory_passes(share: Path, tmp_path: Path) -> None:
    result = run_script(share, "alice", tmp_path, NFSUID_EXPECT_UID="2001")

    assert result.returncode == 0, result.stderr


def test_script_is_posix_sh(share: Path, tmp_path: Path) -> None:
    """Images run it as dash (Ubuntu) or ash (busybox): dash, the strictest here, must run it."""
    dash = Path("/bin/dash")
    if not dash.exists():
        pytest.skip("needs /bin/dash")
    (tmp_path / "run").mkdir()
    env = script_env(share, "alice") | {
        "NFSUID_TERMINATION_LOG": str(tmp_path / "log"),
        "NFSUID_RUN": str(tmp_path / "run"),
        "NFSUID_NB_USER": "alice",
        "NFSUID_NB_GROUP": "alice",
        "NFSUID_HOME": "/home/alice",
        "NFSUID_GROUPS": "5001:p1",
        "NFSUID_HOOKS": "1",  # both branches, so that dash reads all of it
        "NFSUID_ETC": "1",
    }
    result = subprocess.run(
        [str(dash), "-c", identity_script()], env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert parse_resolved(result.stdout) == (2001, 3001)


def test_an_alias_link_to_another_users_directory_is_refused(share: Path, tmp_path: Path) -> None:
    """home/asmith -> bob: the kubelet would follow it and mount bob's directory for asmith."""
    result = run_script(share, "asmith", tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == expected_refusal("asmith", "symlink")
    assert not (tmp_path / "run" / HOOK_NAME).exists()


def test_a_link_in_a_parent_component_is_refused_naming_it(share: Path, tmp_path: Path) -> None:
    result = run_script(share, "alice", tmp_path, **script_env(share, "alice", "homes/alice"))

    assert result.returncode == 1
    assert result.stderr.strip() == expected_refusal("alice", "symlink", "/data/hpc/homes")


def test_a_parent_nobody_cannot_search_is_refused_not_called_missing() -> None:
    with tempfile.TemporaryDirectory() as top:  # pytest's tmp_path is closed to nobody
        top = Path(top)
        top.chmod(0o755)
        (top / "share" / "locked").mkdir(parents=True, mode=0o700)
        (top / "share").chmod(0o755)
        (top / "termination-log").touch()
        (top / "termination-log").chmod(0o666)
        env = script_env(top / "share", "carol", "locked/carol")
        result = run_script(top / "share", "carol", top, as_uid=65534, **env)

    assert result.returncode == 1
    assert result.stderr.strip() == expected_refusal("carol", "unsearchable", "/data/hpc/locked")


def test_the_check_reads_the_share_and_writes_nothing_there(share: Path, tmp_path: Path) -> None:
    before = sorted((p, p.lstat().st_mtime_ns) for p in share.rglob("*"))

    for name in ("missing", "asmith", "alice"):
        run_script(share, name, tmp_path)

    assert sorted((p, p.lstat().st_mtime_ns) for p in share.rglob("*")) == before

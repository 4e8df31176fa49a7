"""A lab started through the hub runs as its directory's owner and sees only that directory.

Every assertion runs for both identity sources, inside the lab, through the lab's own APIs.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from .conftest import OWNERS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alice_lab(hub):
    asyncio.run(hub.start("alice"))
    return hub


async def test_lab_runs_as_the_directory_owner_with_no_other_group(alice_lab) -> None:
    out = await alice_lab.run_in_lab(
        "alice",
        "import subprocess; print(subprocess.run(['id'], capture_output=True, text=True).stdout)",
    )

    # Names come from the image's /etc/passwd, which only start.sh running as root
    # (the initcontainer source) can extend; a lab started as the user has numbers.
    assert re.fullmatch(
        r"uid=2001(\(alice\))? gid=3001(\(alice\))? groups=3001(\(alice\))?", out.strip()
    )


async def test_file_created_in_home_is_owned_by_the_user_on_the_share(alice_lab, share) -> None:
    async with await alice_lab.lab_session("alice") as lab:
        async with lab.put(
            "api/contents/e2e-note.txt", json={"type": "file", "format": "text", "content": "hello"}
        ) as r:
            assert r.status in (200, 201), await r.text()

    on_share = share / "home" / "alice" / "e2e-note.txt"
    assert (on_share.stat().st_uid, on_share.stat().st_gid) == OWNERS["alice"]
    assert on_share.read_text() == "hello"


async def test_home_is_a_symlink_to_the_share_path(alice_lab) -> None:
    out = await alice_lab.run_in_lab(
        "alice",
        "import os; print(os.readlink('/home/alice'), os.path.realpath(os.path.expanduser('~')))",
    )

    assert out.split() == ["/data/hpc/home/alice", "/data/hpc/home/alice"]


async def test_other_users_directories_are_absent(alice_lab, share) -> None:
    code = f"""
import os
print(sorted(os.listdir('/data/hpc/home')))
for path in ['/data/hpc/home/bob', '/data/hpc/home/qiang.guo03', {str(share / "home" / "bob")!r}]:
    try:
        os.listdir(path)
        print('readable', path)
    except OSError as e:
        print(type(e).__name__)
"""
    out = (await alice_lab.run_in_lab("alice", code)).split("\n")

    assert out[0] == "['alice']"
    assert out[1:4] == ["FileNotFoundError"] * 3


async def test_lab_has_no_capabilities_and_cannot_become_root(alice_lab) -> None:
    code = """
import os
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print(status['CapEff'].strip(), status['CapPrm'].strip(), status['NoNewPrivs'].strip())
for attempt in (lambda: os.setuid(0), lambda: os.setgid(0)):
    try:
        attempt()
        print('became root')
    except PermissionError:
        print('refused')
"""
    out = (await alice_lab.run_in_lab("alice", code)).split()

    assert out == ["0000000000000000", "0000000000000000", "1", "refused", "refused"]

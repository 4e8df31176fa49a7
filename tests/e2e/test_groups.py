"""The lab's whole Unix identity: names, supplementary groups and a group-shared project.

For both identity sources, through a real hub: alice is in project group p1 (gid 5001), the
group callable also offers her groups the guard rails refuse, and bob is in no group.
"""

from __future__ import annotations

import asyncio
import re
import textwrap

import pytest

from .conftest import OWNERS, PROJECT_GID, running_hub, source_settings

pytestmark = pytest.mark.e2e

GROUPS_CONFIG = """
def groups(spawner):
    if spawner.user.name == "alice":
        return [(5001, "p1"), (0, "wheel"), (65534, "nogroup2"), (50, "low")]
    return []

c.NFSUIDSpawner.supplemental_groups = groups
c.NFSUIDSpawner.extra_share_mounts = [
    {"subPath": "projects", "mountPath": "/data/hpc/projects", "readOnly": False}
]
"""


@pytest.fixture(scope="module", params=["initcontainer", "hub"])
def hub(request, sandbox, share, tmp_path_factory):
    state = tmp_path_factory.mktemp("groups-hub")
    config = state / "groups_config.py"
    config.write_text(GROUPS_CONFIG)
    settings = source_settings(request.param, share)
    with running_hub(sandbox, state, spawner=settings, extra_config=[str(config)]) as hub:
        hub.alice_progress = asyncio.run(start_reading_progress(hub, "alice"))
        asyncio.run(hub.start("bob"))
        yield hub


async def start_reading_progress(hub, user: str) -> list[str]:
    """Start the user's lab and read its progress, as the spawn page does while it spawns.

    The POST answers only when the spawn is done or slow, so the progress is read while
    the POST waits.
    """
    post = asyncio.ensure_future(hub.request_start(user))
    while (await hub.user(user)).get("pending") != "spawn":
        assert not post.done(), "the spawn ended before its progress could be read"
        await asyncio.sleep(0.05)
    events = await hub.progress(user)
    assert await post in (201, 202)
    await hub.wait_ready(user)
    return [event.get("message", "") for event in events]


def sh(command: str) -> str:
    """Python for run_in_lab that prints what a shell command prints, or its error."""
    return textwrap.dedent(f"""
        import subprocess
        done = subprocess.run({command!r}, shell=True, capture_output=True, text=True)
        print(done.stdout + done.stderr, end="")
    """)


async def test_id_shows_the_owner_and_exactly_the_granted_groups_with_names(hub) -> None:
    out = await hub.run_in_lab("alice", sh("id"))

    assert out.strip() == "uid=2001(alice) gid=3001(alice) groups=3001(alice),5001(p1)"


async def test_a_user_in_no_group_has_only_their_own(hub) -> None:
    out = await hub.run_in_lab("bob", sh("id"))

    assert out.strip() == "uid=2002(bob) gid=3002(bob) groups=3002(bob)"


async def test_a_member_writes_into_the_project_as_the_project_group(hub, share) -> None:
    name = f"from-alice-{hub.settings.port}.txt"
    await hub.run_in_lab("alice", f"open('/data/hpc/projects/p1/{name}', 'w').write('shared')")

    made = share / "projects" / "p1" / name
    assert (made.stat().st_uid, made.stat().st_gid) == (OWNERS["alice"][0], PROJECT_GID)


async def test_a_non_member_cannot_enter_the_project(hub) -> None:
    out = await hub.run_in_lab(
        "bob",
        "try:\n    open('/data/hpc/projects/p1/x', 'w')\nexcept OSError as e:\n    print(e.strerror)",
    )

    assert out.strip() == "Permission denied"


async def test_names_resolve_everywhere(hub) -> None:
    code = textwrap.dedent("""
        import getpass, os, pwd, subprocess
        print(getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name, os.environ["HOME"])
        print(subprocess.run(["whoami"], capture_output=True, text=True).stdout.strip())
        print(subprocess.run(["groups"], capture_output=True, text=True).stdout.strip())
        os.makedirs("/data/hpc/projects/p1/ls-check", exist_ok=True)
        print(subprocess.run(["ls", "-ld", "/data/hpc/projects/p1/ls-check"],
                             capture_output=True, text=True).stdout.split()[2:4])
    """)
    out = (await hub.run_in_lab("alice", code)).splitlines()

    assert out == ["alice alice /home/alice", "alice", "alice p1", "['alice', 'p1']"]


async def test_the_labs_passwd_is_not_writable_by_the_user(hub) -> None:
    code = "import os; print(os.access('/etc/passwd', os.W_OK), os.access('/etc/group', os.W_OK))"

    assert (await hub.run_in_lab("alice", code)).strip() == "False False"


async def test_refused_groups_are_absent_and_the_progress_says_why(hub) -> None:
    messages = hub.alice_progress

    for refused in ("wheel (0)", "nogroup2 (65534)", "low (50)"):
        assert any(f"group {refused} is left out" in m for m in messages), messages
    out = await hub.run_in_lab("alice", sh("id -G"))
    assert sorted(map(int, out.split())) == [3001, 5001]


async def test_a_new_terminal_opens_in_the_home(hub) -> None:
    async with await hub.lab_session("alice") as lab:
        async with lab.post("api/terminals", json={"cwd": ""}) as r:
            assert r.status == 200, await r.text()
            terminal = (await r.json())["name"]
        try:
            code = textwrap.dedent("""
                import os
                shells = [p for p in os.listdir('/proc') if p.isdigit()
                          and open(f'/proc/{p}/cmdline', 'rb').read().endswith(b'-l\\0')]
                print(sorted({os.readlink(f'/proc/{p}/cwd') for p in shells}))
            """)
            out = await hub.run_in_lab("alice", code)
        finally:
            async with lab.delete(f"api/terminals/{terminal}"):
                pass

    assert re.fullmatch(r"\['/data/hpc/home/alice'\]\n?", out), out

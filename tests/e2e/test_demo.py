"""The README's `nfsuidspawner demo`: it starts, serves its users as its banner says, and
Ctrl-C cleans up; on a taken port it stops at once, saying so.

The demo is run as a user would run it, as its console script in a process session of its
own, and is driven over HTTP like a browser (login form, cookies, the lab's REST API).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from .conftest import REPO, free_port

pytestmark = pytest.mark.e2e

NFSUIDSPAWNER = Path(sys.executable).with_name("nfsuidspawner")


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{REPO / 'node_modules' / '.bin'}:{os.environ['PATH']}")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)
    banner: threading.Event = field(default_factory=threading.Event)
    lab_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if "Press Ctrl-C" in line:
                self.banner.set()
        self.banner.set()  # the demo ended before (or after) its banner

    @property
    def url(self) -> str:
        return re.search(r"nfsuidspawner demo is running: (\S+)", self.text).group(1)

    @property
    def files(self) -> Path:
        return Path(re.search(r"Files: (\S+)", self.text).group(1))

    def stop(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


@contextlib.contextmanager
def running_demo() -> Iterator[Demo]:
    """The demo, started as its console script, until its banner; stopped at the end."""
    process = subprocess.Popen(
        [str(NFSUIDSPAWNER), "demo", "--port", str(free_port())],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    demo = Demo(process, port=0)
    reader = threading.Thread(target=demo._read, daemon=True)
    reader.start()
    try:
        if not demo.banner.wait(120) or process.poll() is not None:
            pytest.fail(f"the demo printed no banner within 120 s:\n{demo.text}")
        demo.port = int(demo.url.rsplit(":", 1)[1])
        yield demo
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(10)
        if "Files: " in demo.text:
            shutil.rmtree(demo.files, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(e2e_precondition: None) -> Iterator[Demo]:
    with running_demo() as demo:
        yield demo


@pytest.fixture(scope="module")
def bobs_lab(demo: Demo) -> Demo:
    """bob logged in through the login form, with his lab up."""
    demo.lab_cookies = asyncio.run(_log_in_and_wait_for_lab(demo, "bob", "demo"))
    return demo


def _session() -> aiohttp.ClientSession:
    # The hub is at an IP address; aiohttp keeps such cookies only with unsafe=True.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _log_in_and_wait_for_lab(demo: Demo, user: str, password: str) -> dict[str, str]:
    """Log in through the login form and wait for the lab; the session's cookies."""
    async with _session() as http:
        async with http.get(f"{demo.url}/hub/login") as r:
            assert r.status == 200, await r.text()
        xsrf = next(c.value for c in http.cookie_jar if c.key == "_xsrf")
        async with http.post(
            f"{demo.url}/hub/login?next=",
            data={"username": user, "password": password, "_xsrf": xsrf},
        ) as r:
            assert r.status == 200 and "/hub/login" not in r.url.path, f"login: {r.status} {r.url}"
        await _wait_for_lab(http, demo, user)
        return {c.key: c.value for c in http.cookie_jar}


async def _wait_for_lab(http: aiohttp.ClientSession, demo: Demo, user: str) -> None:
    lab = f"{demo.url}/user/{user}/"
    deadline = time.monotonic() + 120
    last = ""
    while time.monotonic() < deadline:
        # While the lab starts, the hub answers 424 for it; once up, the lab answers 403
        # until a page visit has done the OAuth dance with the hub and set the lab's cookie.
        async with http.get(lab + "api/status") as r:
            last = f"{r.status} {r.url}"
            if r.status == 200 and "started" in await r.json():
                return
        if r.status == 403:
            async with http.get(lab + "lab", headers={"Accept": "text/html"}) as r:
                last = f"{r.status} {r.url} (OAuth)"
        await asyncio.sleep(1)
    raise AssertionError(
        f"{user}'s lab did not answer {lab}api/status within 120 s"
        f" (last: {last})\n{demo.text}\n{_hub_log(demo)}"
    )


def _hub_log(demo: Demo) -> str:
    log = demo.files / "hub" / "jupyterhub.log"
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def _processes_mentioning(path: Path, port: int) -> list[str]:
    """Processes whose command line names this path or this port (CHP has `--port N`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(str(path) in arg or arg == str(port) or arg.endswith(f":{port}") for arg in args):
            found.append(f"{entry.name}: {' '.join(args)[:200]}")
    return found


async def _listing(demo: Demo, user: str, cookies: dict[str, str]) -> list[str]:
    """The names in the user's lab's root folder (their home), through the lab's REST API."""
    async with _session() as http:
        http.cookie_jar.update_cookies(cookies)
        async with http.get(f"{demo.url}/user/{user}/api/contents/") as r:
            assert r.status == 200, await r.text()
            return [item["name"] for item in (await r.json())["content"]]


async def test_demo_serves_bob_a_lab_listing_his_readme(bobs_lab: Demo) -> None:
    assert "README.txt" in await _listing(bobs_lab, "bob", bobs_lab.lab_cookies)


def test_the_banner_names_each_user_and_why_carols_lab_is_refused(demo: Demo) -> None:
    banner = demo.text

    for line in [
        "Log in with password demo as:",
        "alice, bob  Each lab runs as the owner of the user's directory",
        "alice as uid 2001, bob as uid 2002",
        f"admin       The admin panel ({demo.url}/hub/admin), and a lab as uid 2000.",
        "carol       Refused: her directory is owned by root, and no lab runs as root.",
    ]:
        assert line in banner, banner
    home = demo.files / "exports" / "hpc" / "home"
    assert (home / "carol").stat().st_uid == 0
    assert (home / "admin").stat().st_uid == 2000


async def test_the_admin_gets_a_lab_of_their_own(demo: Demo) -> None:
    cookies = await _log_in_and_wait_for_lab(demo, "admin", "demo")

    assert "README.txt" in await _listing(demo, "admin", cookies)


def test_demo_labs_share_a_project_group(bobs_lab: Demo) -> None:
    """The banner says so, the share has the project, and bob's lab runs with its group."""
    project = bobs_lab.files / "exports" / "hpc" / "projects" / "p1"
    groups = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("Uid", "").split()[:1] == ["2002"]:
            groups |= set(fields["Groups"].split())

    assert "project group p1 (gid 5001)" in bobs_lab.text
    assert (project.stat().st_gid, oct(project.stat().st_mode & 0o7777)) == (5001, "0o2770")
    assert groups == {"3002", "5001"}


def test_ctrl_c_stops_the_demo_and_removes_its_files_and_processes(bobs_lab: Demo) -> None:
    files, port = bobs_lab.files, bobs_lab.port
    assert files.name.startswith("nfsuid-demo-") and files.is_dir()

    assert bobs_lab.stop(timeout=30) == 0
    assert "Stopping the hub, the labs and the sandbox" in bobs_lab.text
    assert not files.exists()
    assert _processes_mentioning(files, port) == []


def _demo_files() -> set[Path]:
    return {p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("nfsuid-demo-")}


def test_demo_on_a_taken_port_fails_at_once_naming_the_port_and_the_option() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, as the demo does, to reach its port check")
    before = _demo_files()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        began = time.monotonic()
        process = subprocess.Popen(
            [str(NFSUIDSPAWNER), "demo", "--port", str(port)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # it went on to start: let it clean up
            os.killpg(process.pid, signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
        seconds = time.monotonic() - began

    assert process.returncode != 0, output
    assert seconds < 2, f"{seconds:.1f} s:\n{output}"
    assert output.strip().count("\n") == 0, output
    assert str(port) in output and "--port" in output, output
    assert _demo_files() == before


def _as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run `nfsuidspawner ARGV` as uid 65534 in a fork of this process: its exit code and
    stderr. A fork, not the console script, because a clone in a directory only root can
    enter (CI's) has a venv that nobody cannot even execute."""
    from nfsuidspawner import cli  # imported as root: nobody may not read this clone

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write, 2)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = cli.main(argv)
            sys.stderr.flush()
        finally:
            os._exit(locals().get("code", 2))
    os.close(write)
    with os.fdopen(read) as output:
        stderr = output.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stderr


def test_demo_as_non_root_exits_1_saying_what_it_cannot_enforce() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the demo as nobody")

    code, stderr = _as_nobody(["demo", "--port", str(free_port())])

    assert code == 1
    for phrase in [
        "must run as root",
        "cannot enforce",
        "uid/gid that owns the user's directory",
        "dropping capabilities",
        "private mount and PID namespaces",
        "Run it as root",
    ]:
        assert phrase in stderr
    assert not any(
        p.name.startswith("nfsuid-demo-") and p.stat().st_uid == 65534
        for p in Path("/tmp").iterdir()
    )

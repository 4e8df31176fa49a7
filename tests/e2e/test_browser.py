"""What a person sees in a browser: the hub's login form, the spawn page and JupyterLab.

Headless Chromium is Debian's /usr/bin/chromium, driven by Playwright (its own browser
builds are never downloaded). Screenshots go to test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from .conftest import OWNERS, REPO, Hub, running_hub
from .test_demo import Demo, running_demo

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
# Hands the spawn page's event log, line by line, to the test at each change: the page
# goes on to the lab once the lab is up.
EVENT_LOG_OBSERVER = """
new MutationObserver(() => {
  const log = document.getElementById("progress-log");
  if (log) window.nfsuidEventLog([...log.children].map((line) => line.textContent));
}).observe(document, { childList: true, subtree: true });
"""


@pytest.fixture(scope="module")
def hub(sandbox, tmp_path_factory) -> Iterator[Hub]:
    with running_hub(
        sandbox, tmp_path_factory.mktemp("hub"), spawner={"identity_source": "initcontainer"}
    ) as hub:
        yield hub


@pytest.fixture(scope="module")
def hub_checking_identity(sandbox, share, tmp_path_factory) -> Iterator[Hub]:
    """A hub that refuses a bad directory itself, before any pod exists: in well under 1 s."""
    with running_hub(
        sandbox,
        tmp_path_factory.mktemp("hub"),
        spawner={"identity_source": "hub", "hub_share_path": str(share)},
    ) as hub:
        yield hub


@pytest.fixture(scope="module")
def demo(e2e_precondition: None) -> Iterator[Demo]:
    """`nfsuidspawner demo`, as its README and banner present it."""
    with running_demo() as demo:
        yield demo


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page in a fresh Chromium profile; the browser ends with the test."""
    if not CHROMIUM.exists():
        reason = f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        print(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield browser.pages[0] if browser.pages else await browser.new_page()
        finally:
            await browser.close()


@pytest.fixture
def alice_file(share: Path) -> Iterator[str]:
    """A uniquely named file in alice's directory on the share, owned by her."""
    name = f"seen-{secrets.token_hex(3)}.txt"  # short enough to show whole in the listing
    path = share / "home" / "alice" / name
    path.write_text("written on the share before alice logged in\n")
    os.chown(path, *OWNERS["alice"])
    yield name
    path.unlink(missing_ok=True)


async def log_in(page: Page, hub: Hub | Demo, user: str) -> None:
    password = hub.settings.password if isinstance(hub, Hub) else "demo"
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", user)
    await page.fill("#password_input", password)
    await page.click("#login_submit")


async def event_log(page: Page) -> list[str]:
    """What the spawn page's event log shows, as it was last shown."""
    shown: list[str] = []

    def show(lines: list[str]) -> None:
        shown[:] = lines

    await page.expose_function("nfsuidEventLog", show)
    await page.add_init_script(EVENT_LOG_OBSERVER)
    return shown


@contextlib.asynccontextmanager
async def explained_failure(page: Page, hub: Hub, user: str) -> AsyncIterator[None]:
    """On a timeout or failed expectation, keep a screenshot and add the hub's side of it."""
    try:
        yield
    except Exception as error:
        failed = await screenshot(page, f"{user}-failed.png")
        raise AssertionError(
            f"{error}\nat {page.url} (screenshot: {failed})\n"
            f"page text: {await page.locator('body').inner_text()}\n" + await hub.diagnose(user)
        ) from None


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_login_shows_the_identity_step_then_jupyterlab_with_the_users_own_files(
    hub: Hub, page: Page, alice_file: str
) -> None:
    shown = await event_log(page)
    await log_in(page, hub, "alice")

    async with explained_failure(page, hub, "alice"):
        await page.wait_for_url(f"{hub.url}/user/alice/lab**", timeout=90_000)
        await page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=90_000)
        await expect(page.locator(".jp-DirListing-itemText", has_text=alice_file)).to_be_visible(
            timeout=30_000
        )
    shot = await screenshot(page, "lab-alice.png")

    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 20_000
    checking = "nfsuid: checking /data/hpc/home/alice, the directory of alice"
    found = "nfsuid: alice runs as 2001:3001, the owner of /data/hpc/home/alice"
    assert checking in shown and found in shown, shown
    assert shown.index(checking) < shown.index(found)


async def expect_refusal_on_the_page(page: Page, hub: Hub, path: str, shot: str) -> None:
    await log_in(page, hub, "rooted")

    body = page.locator("body")
    async with explained_failure(page, hub, "rooted"):
        await expect(body).to_contain_text("nfsuid: user rooted:", timeout=30_000)
        await expect(body).to_contain_text(f"{path} is owned by uid 0", timeout=1_000)
    await screenshot(page, shot)


async def test_refused_spawn_shows_its_reason_on_the_spawn_page(hub: Hub, page: Page) -> None:
    # Whether the initContainer refuses before or after the spawn page's first second, the
    # reason is on the page: the spawn-pending page's progress, or /hub/spawn's error page.
    await expect_refusal_on_the_page(page, hub, "/data/hpc/home/rooted", "spawn-refused.png")


async def test_refusal_within_a_second_of_the_spawn_request_shows_its_reason(
    hub_checking_identity: Hub, page: Page
) -> None:
    # JupyterHub's /hub/spawn waits 1 s for the spawn: a failure by then is shown by that
    # handler's error page, not by the spawn-pending page.
    await expect_refusal_on_the_page(
        page, hub_checking_identity, "/data/hpc/home/rooted", "spawn-refused-fast.png"
    )


async def test_demo_carol_is_shown_why_her_lab_is_refused(demo: Demo, page: Page) -> None:
    """The banner's refusal example: the page says who, which directory, why, and the fix."""
    await log_in(page, demo, "carol")

    body = page.locator("body")
    try:
        await expect(body).to_contain_text("nfsuid: user carol:", timeout=30_000)
        await expect(body).to_contain_text(
            "/data/hpc/home/carol is owned by uid 0 (root). Fix: chown it", timeout=1_000
        )
        # Not a bare "400 : error" heading: the page says what happened.
        await expect(body).not_to_contain_text("400 : error", timeout=1_000)
    except AssertionError as error:
        failed = await screenshot(page, "demo-carol-failed.png")
        raise AssertionError(
            f"{error}\nat {page.url} (screenshot: {failed})\n"
            f"page text: {await body.inner_text()}\n{demo.text}"
        ) from None
    await screenshot(page, "demo-carol-refused.png")

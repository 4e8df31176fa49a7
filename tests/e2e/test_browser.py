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


async def log_in(page: Page, hub: Hub, user: str) -> None:
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", user)
    await page.fill("#password_input", hub.settings.password)
    await page.click("#login_submit")


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


async def test_login_opens_jupyterlab_showing_the_users_own_files(
    hub: Hub, page: Page, alice_file: str
) -> None:
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

"""A real browser on the Temporal Web UI: what an operator sees of a running and a finished upgrade.

Headless Chromium from Debian's packages (installed here on first use when the machine allows
it), driven by Playwright with that system browser; no browser build is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from models.upgrade import upgrade_workflow_id
from starter.upgrades import cancel_upgrade, final_report
from tests.helpers.upgrades import upgrade_paused_after_first_batch

if TYPE_CHECKING:
    from playwright.async_api import Browser

# As the workplace's probe starts it: no sandbox as root, and no calls to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    return next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser"))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed with apt-get where this runs as root with apt available."""
    path = find_chromium()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        installed = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        path = find_chromium()
        if path is None:
            pytest.skip(f"Chromium could not be installed with apt-get: {installed.stderr.strip()[-300:]}")
    if path is None:
        pytest.skip(
            "Chromium is not installed and cannot be here (needs root and apt-get): apt-get install chromium"
        )
    return path


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def metadata_text(browser: Browser, url: str, expect: str) -> str:
    """The workflow's User Metadata tab: summary, details and current details. The UI renders
    Markdown in iframes, so the text of every frame is read until `expect` shows."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        await page.goto(url)
        await page.get_by_text("Current Details", exact=True).wait_for(timeout=30_000)
        text = ""
        for _ in range(60):
            texts = []
            for frame in page.frames:
                with contextlib.suppress(Exception):  # a frame still loading; read it next time
                    texts.append(await frame.inner_text("body"))
            text = "\n".join(texts)
            if expect in text and "Effective policy" in text:
                return text
            await page.wait_for_timeout(500)
        return text
    finally:
        await page.close()


async def test_the_web_ui_shows_summary_and_current_details_of_running_and_finished_upgrades(
    local_env, local_worker, fleet, browser, web_ui_url
):
    client = local_env.client
    name, handle, admission = await upgrade_paused_after_first_batch(client, local_worker.task_queue, fleet)
    url = (
        f"{web_ui_url}/namespaces/default/workflows/"
        f"{quote(upgrade_workflow_id(name), safe='')}/{admission.run_id}/user-metadata"
    )

    running = await metadata_text(browser, url, "RollingForward")
    assert "RUNNING" in running
    assert f"{name}: 2024.11.01 → 2024.12.01 · 6 instances" in running
    assert "pauseTimeBetweenBatches" in running and "PT1H" in running
    assert "RollingForward · batch 1 of 6" in running

    await cancel_upgrade(client, name)
    await final_report(handle)
    finished = await metadata_text(browser, url, "Cancelled")
    assert "COMPLETED" in finished  # the workflow; the upgrade itself was cancelled:
    assert "Cancelled · batch 1 of" in finished
    assert "Cancel requested: no new batch starts." in finished
    assert f"{name}: 2024.11.01 → 2024.12.01 · 6 instances" in finished

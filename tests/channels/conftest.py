"""Fixtures of the channel tests: a real headless Chromium (Debian's, driven by Playwright) for
the web chat, one per module (Playwright's sync API keeps an event loop running in the main
thread while it is open, which the asyncio tests of other modules could not share), and a fresh
French page per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness.wait import BROWSER_WAIT_MS

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
expect.set_options(timeout=BROWSER_WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(BROWSER_WAIT_MS)
    yield page
    context.close()

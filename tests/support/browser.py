"""A real browser for the console's tests: Debian's Chromium driven by Playwright's Python
package (its wheel carries its own driver; `playwright install` cannot download a browser here,
and is never run). One browser per test session; each test takes a fresh context (its own
cookies). Where Chromium is missing the browser tests skip, and in CI they fail
(storageservers.missing_server), since .ci/run installs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.storageservers import missing_server

CHROMIUM = os.environ.get("CAIRN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if TYPE_CHECKING:  # at run time playwright is imported by the fixture, for a clear skip
    from playwright.sync_api import Browser, BrowserContext


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        missing_server(f"Chromium ({CHROMIUM}, Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_server("Playwright (the playwright package of the test extra)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh profile (no cookies) that accepts the test server's self-signed certificate."""
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 800}
    )
    try:
        yield context
    finally:
        context.close()

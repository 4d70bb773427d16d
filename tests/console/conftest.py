"""The browser fixtures for the console's tests (tests/support/browser.py)."""

from tests.support.browser import browser_context, chromium  # noqa: F401 (fixtures)

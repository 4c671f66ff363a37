"""Playwright driving Debian's Chromium, headless, with the flags that work on these machines."""

from collections.abc import Iterator
from contextlib import contextmanager

from .server import PASSWORD, require_program

# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# closed network refuses; --no-sandbox because the tests run as root in CI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (skipped, or failed under CI=true, when it is missing)."""
    executable = require_program("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_up(page, base_url: str, username: str) -> None:
    """Sign ``username`` up through the real form in ``page``; it lands on /rooms/."""
    page.goto(base_url + "/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/rooms/")

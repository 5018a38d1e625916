"""Headless Chromium (Debian's `chromium` package) through Playwright, with the flags this
project runs it with and a fresh profile each launch. Shared by the browser tests and the
dashboard benchmark."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

__all__ = ["CHROMIUM_FLAGS", "chromium", "chromium_path"]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Chromium is not installed: `apt-get install chromium` "
            "(scripts/setup.sh does it as root)"
        )
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; Playwright gives it a temporary, fresh profile."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()

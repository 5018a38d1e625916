"""Headless Chromium (Debian's `chromium`) driven by Playwright, for tests of pages served by
a real server process: every page visited is watched for console errors and failed requests,
and screenshots go to var/test-artifacts/ (or MPT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("MPT_TEST_ARTIFACTS", Path(__file__).parents[1] / "var" / "test-artifacts")
)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "Chromium is not installed: `apt-get install chromium` (scripts/setup.sh does it "
            "as root)",
            pytrace=False,
        )
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile (Playwright makes a temporary one)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, failed or refused requests."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def screenshot(self, folder: str, name: str) -> Path:
        path = ARTIFACTS / folder / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path


def watch(page: Page) -> Watched:
    watched = Watched(page)
    page.on(
        "console",
        lambda m: (
            watched.problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: watched.problems.append(f"failed: {r.url}"))
    page.on(
        "response",
        lambda r: watched.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
    )
    return watched

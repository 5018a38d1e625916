"""Headless Chromium (Debian's `chromium`) driven by Playwright, for tests of pages served by
a real server process: every page visited is watched for console errors and failed requests,
and screenshots go to var/test-artifacts/ (or MPT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from bench.browser import chromium as launch
from bench.browser import chromium_path

ARTIFACTS = Path(
    os.environ.get("MPT_TEST_ARTIFACTS", Path(__file__).parents[1] / "var" / "test-artifacts")
)


@contextmanager
def chromium() -> Iterator[Browser]:
    """`bench.browser.chromium`, failing the test (never skipping) without Chromium."""
    try:
        chromium_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    with launch() as browser:
        yield browser


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

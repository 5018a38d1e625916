"""A real upgrade watched on the dashboard: `mpt-service serve` with its embedded worker, and
headless Chromium on the deployment page while the job trains, then on its report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import Watched, chromium, watch
from tests.processes import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN_TOKEN = "dashboard-live-admin-token"
LIVE_JOB: dict[str, Any] = {"method": "mpt_kl", "arch": "mlp", "epochs": 6, "seed": 0}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[httpx.Client]:
    """`mpt-service serve` in the embedded default: SQLite, its own broker file and worker."""
    with serving(tmp_path / "var", {"MPT_ADMIN_TOKEN": ADMIN_TOKEN}) as url:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            yield client


def _start_upgrade(client: httpx.Client, files: Any) -> str:
    assert client.post("/v1/deployments", json={"name": "default"}).status_code == 201
    package = files.old_package.read_bytes()
    registered = client.post(
        "/v1/deployments/default/releases",
        files={"file": ("old.zip", package, "application/zip")},
        data={"activate": "true"},
    )
    assert registered.status_code == 201, registered.text
    npz = files.digits_npz.read_bytes()
    dataset = client.post("/v1/datasets", files={"file": ("digits.npz", npz, "application/zip")})
    assert dataset.status_code == 201, dataset.text
    body = {**LIVE_JOB, "dataset_id": dataset.json()["id"], "gate": {"max_nfr": 1.0}}
    job = client.post("/v1/deployments/default/upgrades", json=body)
    assert job.status_code == 202, job.text
    return str(job.json()["id"])


def _progress_seen(watched: Watched, job_id: str, timeout: float = 600) -> list[str]:
    """The progress texts the job's row showed, until the page reloads on its end; a
    screenshot once the candidates train."""
    page, seen = watched.page, []
    row = page.locator(f'tr[data-job="{job_id}"]')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = row.get_attribute("data-status")
        text = row.locator('[data-field="status"]').text_content() or ""
        if not seen or seen[-1] != text:
            if "candidate" in text and not any("candidate" in t for t in seen):
                watched.screenshot("dashboard-live", "job-running")
            seen.append(text)
        if status in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(0.2)
    pytest.fail(f"the job did not end within {timeout} s; seen: {seen}")


def test_dashboard_follows_a_running_upgrade_then_shows_its_report(
    service: httpx.Client, files: Any
) -> None:
    job_id = _start_upgrade(service, files)
    base = str(service.base_url).rstrip("/")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        watched = watch(page)
        page.goto(f"{base}/dashboard/login?next=/dashboard/deployments/default")
        page.fill("#key", ADMIN_TOKEN)
        page.click("button[type=submit]")
        expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(1)
        seen = _progress_seen(watched, job_id)
        # it moved on while the page was open, without a reload: running (phase, stage,
        # epoch), then its end, rendered before the page reloads itself
        running = [text for text in seen if text.startswith("running")]
        assert running and seen[-1] == "succeeded", seen
        page.wait_for_load_state("networkidle")  # the reload at the job's end
        expect(page.locator('tr[data-version="2"]')).to_contain_text("passed")
        assert service.get(f"/v1/upgrades/{job_id}").json()["status"] == "succeeded"
        watched.screenshot("dashboard-live", "deployment")
        _check_report(page, watched, base)
    assert watched.problems == [], watched.problems


def _check_report(page: Page, watched: Watched, base: str) -> None:
    page.goto(f"{base}/dashboard/deployments/default/releases/2")
    page.wait_for_load_state("networkidle")
    expect(page.locator("[data-gate]")).to_have_attribute("data-gate", "passed")
    count = page.locator("ul.flipped img").count()
    if count:
        page.locator("ul.flipped img").last.scroll_into_view_if_needed()
        page.wait_for_function(
            "n => [...document.querySelectorAll('ul.flipped img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length === n",
            arg=count,
        )
    watched.screenshot("dashboard-live", "release")

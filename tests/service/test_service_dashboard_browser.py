"""The dashboard in headless Chromium against a real `mpt-service serve` process.

The registry holds a made-up history (`bench.dashboard_history`; releases 2 and 4 passed the
gate, 3 failed, 4 is active). Each page must load without console errors or failed requests,
and its charts and flipped-image grid must show the numbers of the JSON API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from bench.dashboard_history import populate
from core import db
from core.settings import Settings
from core.storage import LocalArtifactStore
from service.auth import create_key
from tests.browser import Watched, chromium, watch
from tests.processes import unused_port, wait_until_healthy

pytestmark = pytest.mark.browser

ADMIN_TOKEN = "browser-test-admin-token"
DASH = "/dashboard/deployments/demo"


@dataclass(frozen=True)
class Server:
    url: str
    read_key: str
    admin_key: str

    def json(self, path: str) -> Any:
        response = httpx.get(
            self.url + path, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A history written into a fresh registry, then served by a real process."""
    var = tmp_path_factory.mktemp("dashboard")
    settings = Settings(_env_file=None, var_dir=var, admin_token=ADMIN_TOKEN)
    db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    sessions = db.make_session_factory(engine)
    populate(
        sessions, LocalArtifactStore(settings.artifact_dir), name="demo", num_classes=12,
        num_old=8, test_per_class=25,
    )  # fmt: skip
    with sessions() as session:
        read_key = create_key(session, "reader", ["read"])
        admin_key = create_key(session, "owner", ["admin"])
        session.commit()
    engine.dispose()
    port = unused_port()
    env = {
        **os.environ, **settings.environment(), "MPT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MPT_PORT": str(port), "MPT_EMBEDDED_WORKER": "false", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    log = var / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}", log)
        yield Server(f"http://127.0.0.1:{port}", read_key, admin_key)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


def _log_in(browser: Browser, server: Server, key: str) -> Watched:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = watch(page)
    page.goto(server.url + "/dashboard")
    expect(page).to_have_url(server.url + "/dashboard/login?next=%2Fdashboard")
    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(server.url + "/dashboard")
    return watched


@pytest.fixture
def reader(browser: Browser, server: Server) -> Iterator[Watched]:
    watched = _log_in(browser, server, server.read_key)
    yield watched
    watched.page.close()


@pytest.fixture
def admin(browser: Browser, server: Server) -> Iterator[Watched]:
    watched = _log_in(browser, server, server.admin_key)
    yield watched
    watched.page.close()


def _visit(watched: Watched, server: Server, path: str, name: str) -> Page:
    page = watched.page
    page.goto(server.url + path)
    page.wait_for_load_state("networkidle")
    watched.screenshot("dashboard", name)
    assert watched.problems == [], watched.problems
    return page


def test_deployments_page(reader: Watched, server: Server) -> None:
    page = _visit(reader, server, "/dashboard", "deployments")
    row = page.locator('tr[data-deployment="demo"]')
    expect(row).to_contain_text("v4")
    expect(row).to_contain_text("✓ gate passed")
    label = row.locator("svg.sparkline").get_attribute("aria-label") or ""
    trend = server.json("/v1/overview")["data"][0]["nfr_trend"]
    assert label.count("%") == len(trend) - 1 and "n/a" in label  # v1 has no report


def test_deployment_page(reader: Watched, server: Server) -> None:
    page = _visit(reader, server, DASH, "deployment")
    timeline = server.json("/v1/deployments/demo/timeline")
    expect(page.locator("tr[data-version]")).to_have_count(len(timeline["releases"]))
    expect(page.locator("tr[data-job]")).to_have_count(len(timeline["jobs"]))
    measured = [r for r in timeline["releases"] if r["nfr"]]
    expect(page.locator("svg.chart .mark-circle")).to_have_count(len(measured))  # NFR
    expect(page.locator("svg.chart .mark-square")).to_have_count(len(measured))  # error
    cumulative = [r for r in timeline["releases"] if r["cumulative_nfr"]]
    expect(page.locator("svg.chart .mark-diamond")).to_have_count(len(cumulative))
    expect(page.locator('tr[data-version="3"]')).to_contain_text("✗ failed")
    expect(page.locator("form[action$='/promote'], form[action$='/rollback']")).to_have_count(0)


def test_release_page_charts_and_images_match_the_report(reader: Watched, server: Server) -> None:
    page = _visit(reader, server, f"{DASH}/releases/3", "release")
    report = server.json("/v1/deployments/demo/releases/3/report")
    candidate = report["reports"]["candidate"]["report"]
    nfr = candidate["nfr"]["old"]
    expect(page.locator('[data-metric="nfr"]')).to_contain_text(f"{100 * nfr['value']:.1f}%")
    expect(page.locator("[data-gate]")).to_have_attribute("data-gate", "failed")
    expect(page.locator('tr[data-rule="max_nfr"]')).to_contain_text("✗ fail")
    hit = [c for c in candidate["per_class"] if c["flips"]]
    expect(page.locator("svg.bars rect")).to_have_count(min(len(hit), 20))
    matrix = candidate["flip_matrix"]
    expect(page.locator("svg.heatmap rect")).to_have_count(
        len(matrix["to_old"]) + len(matrix["to_new"])
    )
    expect(page.locator("svg.candidates path")).to_have_count(len(report["candidates"]))
    expect(page.locator("svg.candidates circle")).to_have_count(1)  # the chosen one, ringed
    images = page.locator("ul.flipped.test img")
    expect(images).to_have_count(len(candidate["flipped"]))
    first = candidate["flipped"][0]
    names = candidate["class_names"]
    expect(page.locator("ul.flipped.test li").first).to_contain_text(
        f"true: {names[first['label']]}"
    )
    expect(page.locator("ul.flipped.test li").first).to_contain_text(names[first["new_prediction"]])
    images.last.scroll_into_view_if_needed()  # they load lazily
    page.wait_for_function(
        "n => [...document.querySelectorAll('ul.flipped.test img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length === n",
        arg=len(candidate["flipped"]),
    )
    sizes = page.eval_on_selector_all(
        "ul.flipped.test img", "imgs => imgs.map(i => i.naturalWidth)"
    )
    assert set(sizes) == {32}  # the stored 32x32 test images, drawn at 64 px
    golden = report["golden"]["report"]
    expect(page.locator("[data-golden-flips]")).to_have_attribute(
        "data-golden-flips", str(golden["nfr"]["all"]["count"])
    )
    expect(page.locator("ul.flipped.golden img")).to_have_count(len(golden["flipped"]))
    expect(page.locator("tr[data-baseline]")).to_have_count(len(report["lineage"]))
    assert reader.problems == [], reader.problems


def test_compare_page(reader: Watched, server: Server) -> None:
    page = _visit(reader, server, f"{DASH}/compare?a=2&b=3", "compare")
    expect(page.locator("section.side")).to_have_count(2)
    expect(page.locator("section.side").nth(1)).to_contain_text("✗ failed")


def test_admin_promotes_after_confirming(admin: Watched, server: Server) -> None:
    page = _visit(admin, server, DASH, "deployment-admin")
    button = page.get_by_role("button", name="Promote v2")
    page.once("dialog", lambda dialog: dialog.dismiss())
    button.click()
    expect(page.locator('tr[data-version="4"]')).to_contain_text("active")
    assert server.json("/v1/deployments/demo")["active_release"]["version"] == 4

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Promote v2").click()
    expect(page.locator(".notice")).to_have_text("v2 is now active")
    expect(page.locator('tr[data-version="2"]')).to_contain_text("active")
    assert server.json("/v1/deployments/demo")["active_release"]["version"] == 2
    assert admin.problems == [], admin.problems


def test_pages_work_from_the_keyboard(reader: Watched, server: Server) -> None:
    page = _visit(reader, server, DASH, "deployment-keyboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.locator('tr[data-version="3"] a').focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url + f"{DASH}/releases/3")

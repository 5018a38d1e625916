"""How fast the dashboard answers at scale: 100 classes, 50 releases, 500 flipped images.

Writes a made-up history (`bench.dashboard_history`) into a fresh SQLite registry, serves it
with a real `uvicorn` process of the service (`bench/servers.py`), then times (1) each page
and its JSON from a plain HTTP client, `--repeat` times in a row, and (2) each page in
headless Chromium until its load event, the release page also with all its thumbnails loaded.

    python -m bench.dashboard --out docs/results/dashboard.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import servers
from bench.browser import chromium
from bench.dashboard_history import populate
from core import db
from core.settings import Settings
from core.storage import open_store
from service.auth import create_key

TOKEN = servers.ADMIN_TOKEN


def _times(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    return statistics.median(seconds), seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]


def _http_rows(url: str, key: str, paths: list[str], repeat: int) -> list[str]:
    rows = []
    with httpx.Client(base_url=url, cookies={"mpt_key": key}, timeout=60) as client:
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            median, p95 = _times(lambda p=path: client.get(p), repeat)  # type: ignore[misc]
            rows.append(
                f"| `{path}` | {len(response.content) / 1024:.0f} KiB | {1000 * median:.0f} ms "
                f"| {1000 * p95:.0f} ms |"
            )
    return rows


def _browser_rows(url: str, key: str, pages: list[str], repeat: int) -> list[str]:
    rows = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "mpt_key", "value": key, "url": url}])
        page = context.new_page()
        for path in pages:
            median, p95 = _times(
                lambda p=path: page.goto(url + p, wait_until="load"),  # type: ignore[misc]
                repeat,
            )
            rows.append(f"| `{path}` | {1000 * median:.0f} ms | {1000 * p95:.0f} ms |")
        release = pages[-1]

        def all_images() -> None:
            page.goto(url + release)
            page.evaluate(
                "document.querySelectorAll('ul.flipped img').forEach(i => i.loading = 'eager')"
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('ul.flipped img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )

        median, p95 = _times(all_images, repeat)
        count = page.locator("ul.flipped img").count()
        rows.append(
            f"| `{release}` with all {count} thumbnails loaded "
            f"| {1000 * median:.0f} ms | {1000 * p95:.0f} ms |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        var = Path(folder)
        settings = Settings(_env_file=None, var_dir=var, admin_token=TOKEN)
        db.migrate(settings.database_url)
        sessions = db.make_session_factory(db.make_engine(settings.database_url))
        history = populate(
            sessions, open_store(settings), name="bench", num_classes=100,
            num_old=80, releases_count=50, test_per_class=50, flip_rate=0.12,
        )  # fmt: skip
        with sessions() as session:
            key = create_key(session, "bench-reader", ["read"])
            session.commit()
        server = servers.start_api(var, args.port)
        url = server.url
        try:
            report = _busiest_report(url, history.versions)
            base = "/dashboard/deployments/bench"
            pages = ["/dashboard", base, f"{base}/compare", f"{base}/releases/{report}"]
            api = ["/v1/overview", "/v1/deployments/bench/timeline",
                   f"/v1/deployments/bench/releases/{report}/report"]  # fmt: skip
            http = _http_rows(url, key, pages + api, args.repeat)
            browser = _browser_rows(url, key, pages, max(3, args.repeat // 4))
        finally:
            servers.stop([server])
    text = _render(args, report, http, browser)
    print(text)
    if args.out:
        args.out.write_text(text)


def _busiest_report(url: str, versions: list[int]) -> int:
    """The release whose report lists the most flipped images (500 at this scale)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    best, most = versions[-1], -1
    for version in versions[1:]:
        body = httpx.get(
            f"{url}/v1/deployments/bench/releases/{version}/report", headers=headers, timeout=60
        ).json()
        flipped = len(body["reports"]["candidate"]["report"]["flipped"])
        if flipped > most:
            best, most = version, flipped
    return best


def _render(args: argparse.Namespace, report: int, http: list[str], browser: list[str]) -> str:
    load = os.getloadavg()
    return "\n".join(
        [
            "# Dashboard page speed",
            "",
            "A made-up history at the scale the dashboard must stay fast at: one deployment, "
            "100 classes (80 old), 50 releases each with both flip reports, 5,000 test images, "
            f"and v{report}'s report listing 500 flipped images. SQLite registry, one "
            "`uvicorn` process of the service (`bench/servers.py`), everything on loopback.",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; load average before the run {load[0]:.2f}.",
            f"Command: `python -m bench.dashboard --repeat {args.repeat}"
            f"{' --out ' + str(args.out) if args.out else ''}`",
            "",
            f"## The server: each page and its JSON, {args.repeat} requests in a row",
            "",
            "| path | size | median | p95 |",
            "|---|---|---|---|",
            *http,
            "",
            "## Headless Chromium: navigation until the load event",
            "",
            "Thumbnails load lazily, so a plain page load fetches only those in view; the last "
            "row makes every one of them load.",
            "",
            "| page | median | p95 |",
            "|---|---|---|",
            *browser,
            "",
        ]
    )


if __name__ == "__main__":
    main()

"""The JSON behind the dashboard, the login cookie, and the dashboard's forms, in process.

The registry holds a made-up history (`bench.dashboard_history`): release 1 uploaded, then
upgrades whose gate passed (v2, v4, the last one active) and failed (v3).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.dashboard_history import History, populate
from core.storage import LocalArtifactStore
from mpt.metrics import FlipReport
from service.browser_auth import COOKIE, csrf_token
from service.report_schemas import FlipReportOut
from service.summaries import per_class_csv

pytestmark = pytest.mark.anyio

DASH = "/dashboard/deployments/demo"


@pytest.fixture
async def history(api: Any) -> History:
    store = api.state.store
    assert isinstance(store, LocalArtifactStore)
    made = populate(
        api.state.sessions, store, name="demo", num_classes=12, num_old=8, test_per_class=25
    )
    await api.state.registry.sync()
    return made


def _anonymous(api: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=api.client._transport, base_url="http://test")


async def _json(api: Any, path: str, **kwargs: Any) -> Any:
    response = await api.client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def test_timeline_lists_every_release_with_its_reports_figures(api, history) -> None:
    timeline = await _json(api, "/v1/deployments/demo/timeline")
    assert [r["version"] for r in timeline["releases"]] == history.versions
    assert timeline["active_version"] == 4 and timeline["num_labels"] == 12
    assert timeline["releases"][0]["nfr"] is None  # uploaded, never measured
    for row in timeline["releases"][1:]:
        report = await _json(api, f"/v1/deployments/demo/releases/{row['version']}/report")
        candidate = report["reports"]["candidate"]["report"]
        assert row["nfr"] == candidate["nfr"]["old"]
        assert row["error_new"] == candidate["error_rates"]["new_model"]["new"]
        assert row["plain_retrain_nfr"] == report["reports"]["no_treatment"]["report"]["nfr"]["old"]
        assert row["gate_passed"] is report["gate"]["passed"]
    assert [r["gate_passed"] for r in timeline["releases"]] == [None, True, False, True]
    assert [j["release_version"] for j in timeline["jobs"]] == [4, 3, 2]  # newest first


async def test_overview_matches_the_timeline(api, history) -> None:
    overview = await _json(api, "/v1/overview")
    timeline = await _json(api, "/v1/deployments/demo/timeline")
    [row] = overview["data"]
    trend = [r["nfr"]["value"] if r["nfr"] else None for r in timeline["releases"]]
    assert row["nfr_trend"] == trend and row["releases"] == 4
    assert row["last_job"]["release_version"] == 4 and row["last_job"]["gate_passed"] is True


async def test_report_is_typed_in_the_openapi_schema(api) -> None:
    schema = await _json(api, "/openapi.json")
    get = schema["paths"]["/v1/deployments/{name}/releases/{version}/report"]["get"]
    ref = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ReleaseReport")
    flipped = schema["components"]["schemas"]["FlipReportOut"]["properties"]["flipped"]
    assert flipped["items"]["$ref"].endswith("/FlippedOut")


async def test_report_lists_the_jobs_candidates_and_selection(api, history) -> None:
    report = await _json(api, "/v1/deployments/demo/releases/3/report")
    assert report["baseline_version"] == 2 and report["dataset_id"] == history.dataset_id
    assert sum(c["chosen"] for c in report["candidates"]) == 1
    assert report["selection"]["max_error"] == pytest.approx(
        report["selection"]["best_error"] + report["selection"]["error_budget"]
    )
    failed = [r for r in report["gate"]["rules"] if not r["passed"]]
    assert [r["rule"] for r in failed] == ["max_nfr"] and failed[0]["direction"] == "at_most"


async def test_per_class_csv_matches_the_report(api, history) -> None:
    response = await api.client.get("/v1/deployments/demo/releases/3/report/classes.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "demo-v3-classes.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    report = await _json(api, "/v1/deployments/demo/releases/3/report")
    per_class = report["reports"]["candidate"]["report"]["per_class"]
    assert [r["class"] for r in rows] == [c["name"] for c in per_class]
    assert [int(r["flips"]) for r in rows] == [c["flips"] for c in per_class]


def test_per_class_csv_keeps_a_class_name_from_running_as_a_formula() -> None:
    report = FlipReport.from_dict(_tiny_report(["=HYPERLINK(1)", "b", "c"]))
    text = per_class_csv(FlipReportOut.model_validate(report.to_dict()))
    assert "'=HYPERLINK(1)" in text and "\n0,=" not in text


def _tiny_report(names: list[str]) -> dict[str, Any]:
    import torch

    from mpt.metrics import flip_report

    tensors = [torch.tensor(v) for v in ([0, 1, 1], [1, 1, 2], [0, 1, 2])]
    return flip_report(*tensors, num_old=2, class_names=names).to_dict()


async def test_thumbnail_is_the_stored_test_image(api, history) -> None:
    response = await api.client.get(f"/v1/datasets/{history.dataset_id}/images/test/7")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    record = await _json(api, f"/v1/datasets/{history.dataset_id}")
    with np.load(api.state.store.path(_artifact(api, record["id"]))) as arrays:
        expected = arrays["x_test"][7]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)


def _artifact(api: Any, dataset_id: str) -> str:
    from core.models import DatasetRecord

    with api.state.sessions() as session:
        return str(session.get_one(DatasetRecord, dataset_id).artifact_sha256)


@pytest.mark.parametrize(
    ("path", "detail"),
    [("test/300", "out of range"), ("val/0", "no 'val' split"), ("nope/0", "unknown split")],
)
async def test_thumbnail_refuses_what_is_not_there(api, history, problem, path, detail) -> None:
    url = f"/v1/datasets/{history.dataset_id}/images/{path}"
    assert detail in problem(await api.client.get(url), 404)["detail"]
    async with _anonymous(api) as anonymous:
        problem(await anonymous.get(url), 401)


async def test_cookie_authorises_reads_but_never_changes(api, history, problem) -> None:
    key = api.key("admin")["Authorization"].removeprefix("Bearer ")
    async with _anonymous(api) as browser:
        browser.cookies.set(COOKIE, key)
        assert (await browser.get("/v1/deployments/demo/timeline")).status_code == 200
        problem(await browser.post("/v1/deployments/demo/releases/2/promote"), 401)
        problem(await browser.post("/v1/deployments/demo/rollback"), 401)


async def test_dashboard_sends_a_visitor_without_a_key_to_the_login_form(api, history) -> None:
    async with _anonymous(api) as browser:
        response = await browser.get(f"{DASH}/releases/3")
        assert response.status_code == 303
        assert (
            response.headers["location"]
            == "/dashboard/login?next=%2Fdashboard%2Fdeployments%2Fdemo%2Freleases%2F3"
        )
        login = await browser.post(
            "/dashboard/login", data={"key": "mpt_wrong", "next": "https://evil.example/"}
        )
        assert login.status_code == 401 and "unknown or revoked key" in login.text


async def test_login_sets_an_http_only_strict_cookie_and_never_redirects_away(api) -> None:
    key = api.key("read")["Authorization"].removeprefix("Bearer ")
    async with _anonymous(api) as browser:
        response = await browser.post(
            "/dashboard/login", data={"key": key, "next": "//evil.example/dashboard"}
        )
        assert response.status_code == 303 and response.headers["location"] == "/dashboard"
        cookie = response.headers["set-cookie"].lower()
        assert f"{COOKIE}={key}".lower() in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert (await browser.get("/dashboard")).status_code == 200


async def test_a_predict_key_cannot_log_in(api) -> None:
    key = api.key("predict")["Authorization"].removeprefix("Bearer ")
    async with _anonymous(api) as browser:
        response = await browser.post("/dashboard/login", data={"key": key})
        assert response.status_code == 401 and "lacks the read scope" in response.text


async def _logged_in(api: Any, *scopes: str) -> tuple[httpx.AsyncClient, str]:
    key = api.key(*scopes)["Authorization"].removeprefix("Bearer ")
    browser = _anonymous(api)
    browser.cookies.set(COOKIE, key)
    return browser, key


async def test_pages_render_for_a_reader_without_admin_controls(api, history) -> None:
    browser, _ = await _logged_in(api, "read")
    async with browser:
        for path in ("/dashboard", DASH, f"{DASH}/releases/3", f"{DASH}/compare?a=2&b=3"):
            response = await browser.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            assert response.headers["content-type"].startswith("text/html")
        page = (await browser.get(DASH)).text
        assert "/promote" not in page and "/rollback" not in page


async def test_release_page_shows_the_reports_numbers(api, history) -> None:
    browser, _ = await _logged_in(api, "read")
    async with browser:
        page = (await browser.get(f"{DASH}/releases/3")).text
    report = await _json(api, "/v1/deployments/demo/releases/3/report")
    candidate = report["reports"]["candidate"]["report"]
    nfr = candidate["nfr"]["old"]
    assert f"{100 * nfr['value']:.1f}% (95% CI {100 * nfr['lower']:.1f}–" in page
    assert f"{nfr['count']:,} of {nfr['n']:,} images" in page
    golden = report["golden"]["report"]
    assert page.count('<li data-index="') == len(candidate["flipped"]) + len(golden["flipped"])
    assert len(candidate["flipped"]) > 0
    assert "✗ Failed: 1 of 2 rules do not hold." in page
    assert "must be at most 5.00%: it is" in page


async def test_unknown_release_is_an_html_error_page(api, history) -> None:
    browser, _ = await _logged_in(api, "read")
    async with browser:
        response = await browser.get(f"{DASH}/releases/99")
        assert response.status_code == 404 and "text/html" in response.headers["content-type"]
        assert "release 99" in response.text


async def test_promote_form_needs_admin_csrf_and_same_origin(api, history) -> None:
    reader, reader_key = await _logged_in(api, "read")
    admin, admin_key = await _logged_in(api, "admin")
    url = f"{DASH}/releases/2/promote"
    async with reader, admin:
        refused = await reader.post(url, data={"csrf": csrf_token(reader_key)})
        assert refused.status_code == 403 and "admin scope" in refused.text
        assert (await admin.post(url, data={"csrf": "0" * 64})).status_code == 403
        assert (await admin.post(url, data={})).status_code == 403
        crossed = await admin.post(
            url, data={"csrf": csrf_token(admin_key)}, headers={"origin": "https://evil.example"}
        )
        assert crossed.status_code == 403 and "another origin" in crossed.text
        assert (await _json(api, "/v1/deployments/demo"))["active_release"]["version"] == 4

        done = await admin.post(url, data={"csrf": csrf_token(admin_key)})
        assert done.status_code == 303 and "v2+is+now+active" in done.headers["location"]
    assert (await _json(api, "/v1/deployments/demo"))["active_release"]["version"] == 2


async def test_forced_promotion_from_the_dashboard_needs_a_reason(api, history) -> None:
    admin, key = await _logged_in(api, "admin")
    url = f"{DASH}/releases/3/promote"
    async with admin:
        refused = await admin.post(url, data={"csrf": csrf_token(key)})
        assert refused.status_code == 409  # the gate failed: only a forced promotion
        blank = await admin.post(url, data={"csrf": csrf_token(key), "force": "true"})
        assert blank.status_code == 422 and "written reason" in blank.text
        assert (await _json(api, "/v1/deployments/demo"))["active_release"]["version"] == 4
        forced = await admin.post(
            url, data={"csrf": csrf_token(key), "force": "true", "reason": "hotfix for class-3"}
        )
        assert forced.status_code == 303
        report = await _json(api, "/v1/deployments/demo/releases/3/report")
    assert report["gate"]["passed"] is False and report["gate"]["forced"] is True
    assert report["gate"]["reason"] == "hotfix for class-3"


async def test_rollback_form(api, history) -> None:
    admin, key = await _logged_in(api, "admin")
    async with admin:
        done = await admin.post(f"{DASH}/rollback", data={"csrf": csrf_token(key)})
        assert done.status_code == 303
        bad = await admin.post(
            f"{DASH}/rollback", data={"csrf": csrf_token(key), "to_version": "two"}
        )
        assert bad.status_code == 422
    assert (await _json(api, "/v1/deployments/demo"))["active_release"]["version"] == 2


async def test_public_dashboard_reads_without_a_key_but_changes_nothing(
    start_api, history_public
) -> None:
    api = history_public
    async with _anonymous(api) as visitor:
        assert (await visitor.get(f"{DASH}/releases/3")).status_code == 200
        assert (await visitor.get("/v1/overview")).status_code == 200
        assert (await visitor.post(f"{DASH}/releases/2/promote", data={})).status_code == 403
        assert (await visitor.post("/v1/deployments/demo/rollback")).status_code == 401
        assert (await visitor.post("/predict", json={"inputs": [[0]]})).status_code == 401


@pytest.fixture
async def history_public(start_api: Any) -> Any:
    api = await start_api(dashboard_public=True)
    populate(api.state.sessions, api.state.store, name="demo", num_classes=12, num_old=8)
    return api


@pytest.mark.postgres
async def test_timeline_reads_report_figures_on_postgresql(start_api, postgres_url) -> None:
    api = await start_api(database_url=postgres_url.render_as_string(hide_password=False))
    populate(api.state.sessions, api.state.store, name="demo", num_classes=12, num_old=8)
    timeline = await _json(api, "/v1/deployments/demo/timeline")
    report = await _json(api, "/v1/deployments/demo/releases/3/report")
    assert timeline["releases"][2]["nfr"] == report["reports"]["candidate"]["report"]["nfr"]["old"]
    assert timeline["releases"][2]["error_all"]["n"] == 12 * 10


HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "a & b",
    "=cmd|'/c calc'!A1",
]


async def test_class_names_cannot_inject_markup(start_api) -> None:
    api = await start_api()
    labels = HOSTILE + [f"c{i}" for i in range(8)]
    populate(api.state.sessions, api.state.store, name="demo", num_classes=12, num_old=8,
             labels=labels)  # fmt: skip
    browser, _ = await _logged_in(api, "read")
    async with browser:
        pages = [await browser.get(f"{DASH}/releases/{v}") for v in (2, 3, 4)]
        pages.append(await browser.get(f"{DASH}/compare?a=2&b=3"))
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert" in page.text


async def test_golden_set_from_checked_flipped_images(api, history) -> None:
    report = await _json(api, "/v1/deployments/demo/releases/3/report")
    picked = [f["index"] for f in report["reports"]["candidate"]["report"]["flipped"][:3]]
    admin, key = await _logged_in(api, "admin")
    async with admin:
        page = (await admin.get(f"{DASH}/releases/3")).text
        assert page.count('name="index"') == len(
            report["reports"]["candidate"]["report"]["flipped"]
        )
        before = (await _json(api, "/v1/deployments/demo/golden"))["images"]
        form = {"csrf": csrf_token(key), "dataset_id": history.dataset_id}
        done = await admin.post(f"{DASH}/golden", data={**form, "index": [str(i) for i in picked]})
        assert done.status_code == 303, done.text
        empty = await admin.post(f"{DASH}/golden", data=form)
        assert empty.status_code == 422
    golden = await _json(api, "/v1/deployments/demo/golden")
    assert golden["images"] == before + len(picked)
    test = np.load(api.state.store.path(_artifact(api, golden["dataset_id"])))["x_test"]
    with np.load(api.state.store.path(_artifact(api, history.dataset_id))) as source:
        assert np.array_equal(test[-len(picked) :], source["x_test"][picked])


async def test_golden_images_api_refuses_what_is_not_there(api, history, problem) -> None:
    url = "/v1/deployments/demo/golden/images"
    body = {"dataset_id": history.dataset_id, "indices": [10_000]}
    assert "not [10000]" in problem(await api.client.post(url, json=body), 409)["detail"]
    problem(await api.client.post(url, json={"dataset_id": "nope", "indices": [0]}), 422)
    problem(await api.client.post(url, json={"dataset_id": history.dataset_id, "indices": []}), 422)
    reader = api.key("read")
    problem(await api.client.post(url, json=body, headers=reader), 403)

"""Liveness, readiness, Prometheus metrics and request ids."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
import torch

pytestmark = pytest.mark.anyio


async def test_healthz_answers_ok(api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_without_active_releases_is_ready(api) -> None:
    await api.create_deployment("default")
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "deployments": {}}


async def test_readyz_lists_the_loaded_deployment(live) -> None:
    response = await live.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "deployments": {"default": True}}


async def test_readyz_is_503_until_the_active_release_is_loaded(
    start_api, packages, tmp_path
) -> None:
    writer = await start_api()
    reader = await start_api(writer.settings.model_copy(update={"release_poll_seconds": 600}))
    await writer.create_deployment("default")
    await writer.register(packages.old, activate=True)
    response = await reader.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "loading", "deployments": {"default": False}}
    await reader.state.registry.sync()
    assert (await reader.client.get("/readyz")).status_code == 200


async def test_metrics_expose_requests_predictions_batches_and_active_release(live) -> None:
    await live.predict(torch.zeros(3, 1, 8, 8))
    response = await live.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "mpt_http_requests_total" in text
    assert re.search(r'mpt_predictions_total\{deployment="default",release="1"\} 3\.0', text)
    assert 'mpt_predict_batch_size_count{deployment="default",release="1"} 1.0' in text
    assert "mpt_predict_latency_seconds" in text
    assert 'mpt_active_release_info{deployment="default",release="1"} 1.0' in text
    assert re.search(
        r'mpt_http_requests_total\{method="POST",route="/predict",status="200"\} 1\.0', text
    )


async def test_metrics_follow_a_promotion(live, packages) -> None:
    await live.register(packages.new)
    await live.promote(2)
    text = (await live.client.get("/metrics")).text
    assert 'mpt_active_release_info{deployment="default",release="2"} 1.0' in text
    assert 'release="1"}' not in text.split("mpt_active_release_info")[-1]


async def test_metrics_count_errors_by_route_template(live) -> None:
    await live.client.get("/v1/deployments/nope")
    text = (await live.client.get("/metrics")).text
    assert 'route="/v1/deployments/{name}",status="404"' in text


async def test_response_carries_a_new_request_id(api) -> None:
    first = (await api.client.get("/healthz")).headers["x-request-id"]
    second = (await api.client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


async def test_response_echoes_the_given_request_id(api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"


async def test_error_response_carries_the_request_id(api, problem) -> None:
    response = await api.client.get("/v1/deployments/nope", headers={"X-Request-ID": "e-1"})
    problem(response, 404)
    assert response.headers["x-request-id"] == "e-1"


@pytest.mark.parametrize("given", ["x" * 65, "two words", "tab\tbed", "a/b"])
async def test_an_unusable_request_id_is_replaced(api, given) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_the_log_of_an_unexpected_error_names_the_request(live, problem, monkeypatch):
    from service.logs import JsonFormatter
    from service.routes import deployments

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    def broken(deployment):
        raise RuntimeError("a bug")

    monkeypatch.setattr(deployments, "deployment_read", broken)
    collect = Collect()
    logging.getLogger("service.errors").addHandler(collect)
    try:
        transport = httpx.ASGITransport(app=live.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(
                "/v1/deployments/default",
                headers={**live.client.headers, "X-Request-ID": "trace-500"},
            )
    finally:
        logging.getLogger("service.errors").removeHandler(collect)
    problem(response, 500)
    [line] = lines
    assert json.loads(line)["request_id"] == "trace-500"

"""Under load: a flooded queue answers 503 with Retry-After at once, a request past its
deadline is dropped with 504, and an unhandled error is answered, logged and counted."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
import torch

from service import logs

ZEROS = {"inputs": torch.zeros(1, 1, 8, 8).tolist()}


@pytest.mark.anyio
async def test_load_deadline_header_shortens_the_wait(live, problem) -> None:
    response = await live.client.post(
        "/predict", json=ZEROS, headers={"X-Request-Deadline-Ms": "0.000001"}
    )
    assert "deadline" in problem(response, 504)["detail"]
    v2 = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                      "data": [0.0] * 64}]}  # fmt: skip
    response = await live.client.post(
        "/v2/models/default/infer", json=v2, headers={"X-Request-Deadline-Ms": "0.000001"}
    )
    assert problem(response, 504)["error"]
    ok = await live.client.post("/predict", json=ZEROS, headers={"X-Request-Deadline-Ms": "9e9"})
    assert ok.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
async def test_load_malformed_deadline_header_is_422(live, problem, value) -> None:
    response = await live.client.post(
        "/predict", json=ZEROS, headers={"X-Request-Deadline-Ms": value}
    )
    assert "X-Request-Deadline-Ms" in problem(response, 422)["detail"]


class _Recorded(logging.Handler):
    """Keeps each record's message with the request id current when it was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append((record.getMessage(), logs.request_id.get()))


def _counted(text: str, route: str, status: str) -> float:
    prefix = f'mpt_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


@pytest.mark.anyio
async def test_load_unhandled_error_is_answered_logged_and_counted(
    live, problem, monkeypatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("service.routes.predict.predictions", broken)
    recorded = _Recorded()
    logging.getLogger("service.access").addHandler(recorded)
    try:
        response = await live.client.post(
            "/predict", json=ZEROS, headers={"X-Request-ID": "trace-500"}
        )
    finally:
        logging.getLogger("service.access").removeHandler(recorded)
    body = problem(response, 500)
    assert body["request_id"] == "trace-500" and "trace-500" in body["detail"]
    assert response.headers["X-Request-ID"] == "trace-500"
    assert ("unhandled error on POST /predict", "trace-500") in recorded.entries
    metrics = (await live.client.get("/metrics")).text
    assert _counted(metrics, "/predict", "500") == 1.0


def _pending(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    prefix = 'mpt_predict_pending_inputs{deployment="default"} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_load_flooded_queue_is_503_with_retry_after(start_server, free_port, packages) -> None:
    # One input may wait; the batcher holds a batch open for 3 s waiting for a second one.
    server = start_server(
        free_port, MPT_BATCH_MAX_QUEUE="1", MPT_BATCH_MAX_SIZE="2", MPT_BATCH_MAX_WAIT_MS="3000"
    )
    server.serve(packages.old)
    answers: list[httpx.Response] = []
    with server.client() as client:
        first = threading.Thread(target=lambda: answers.append(client.post("/predict", json=ZEROS)))
        first.start()
        deadline = time.monotonic() + 60  # only turns a broken build into a failure
        while _pending(server.url) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        flooded = client.post("/predict", json=ZEROS)
        v2 = client.post(
            "/v2/models/default/infer",
            json={"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                              "data": [0.0] * 64}]},
        )  # fmt: skip
        first.join(timeout=60)
        metrics = client.get("/metrics").text
    assert answers[0].status_code == 200
    for refused in (flooded, v2):
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "limit of 1" in refused.json()["detail"]
    assert _counted(metrics, "/predict", "503") == 1.0

"""Under load: a flooded queue answers 503 with Retry-After at once, a request past its
deadline is dropped with 504, and an unhandled error is answered, logged and counted."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import torch

from service import logs

ZEROS = {"inputs": torch.zeros(1, 1, 8, 8).tolist()}
JSON = {"content-type": "application/json"}
V2 = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}


@pytest.mark.anyio
async def test_load_deadline_header_shortens_the_wait(live, problem) -> None:
    response = await live.client.post(
        "/predict", json=ZEROS, headers={"X-Request-Deadline-Ms": "0.000001"}
    )
    assert "deadline" in problem(response, 504)["detail"]
    response = await live.client.post(
        "/v2/models/default/infer", json=V2, headers={"X-Request-Deadline-Ms": "0.000001"}
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
    logging.getLogger("service").addHandler(recorded)  # access and error logs alike
    try:
        response = await live.client.post(
            "/predict", json=ZEROS, headers={"X-Request-ID": "trace-500"}
        )
    finally:
        logging.getLogger("service").removeHandler(recorded)
    body = problem(response, 500)
    assert body["request_id"] == "trace-500" and "trace-500" in body["detail"]
    assert response.headers["X-Request-ID"] == "trace-500"
    assert ("unhandled error on POST /predict", "trace-500") in recorded.entries
    metrics = (await live.client.get("/metrics")).text
    assert _counted(metrics, "/predict", "500") == 1.0


def _gauge(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    prefix = f'{name}{{deployment="default"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def _wait_for(condition: Callable[[], bool]) -> None:
    """Poll `condition`; the bound only turns a broken build into a failure."""
    deadline = time.monotonic() + 120
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _held_back(body: bytes, release: threading.Event) -> Iterator[bytes]:
    """`body` sent in two parts, the second once `release` is set."""
    yield body[:10]
    release.wait(timeout=120)
    yield body[10:]


def test_load_flooded_queue_is_503_with_retry_after(start_process, free_port, packages) -> None:
    # Two inputs may be in the batcher. While request A is still sending its body, the
    # batcher holds B's batch open for A; C, with two inputs, finds no room.
    server = start_process(
        free_port,
        MPT_BATCH_MAX_QUEUE="2",
        MPT_BATCH_MAX_SIZE="2",
        MPT_BATCH_MAX_WAIT_MS="600000",
        MPT_REQUEST_DEADLINE_MS="600000",  # B waits for A however slow the machine is
    )
    server.serve(packages.old)
    body = json.dumps(ZEROS).encode()
    release, answers = threading.Event(), {}

    def send(name: str, content: bytes | Iterator[bytes]) -> None:
        with server.client() as client:
            answers[name] = client.post("/predict", content=content, headers=JSON)

    a = threading.Thread(target=send, args=("a", _held_back(body, release)))
    b = threading.Thread(target=send, args=("b", body))
    a.start()
    _wait_for(lambda: _gauge(server.url, "mpt_predict_arriving_requests") == 1)
    b.start()
    _wait_for(lambda: _gauge(server.url, "mpt_predict_pending_inputs") == 1)
    with server.client() as client:
        flooded = client.post("/predict", json={"inputs": ZEROS["inputs"] * 2})
        two = V2["inputs"][0] | {"shape": [2, 1, 8, 8], "data": [0.0] * 128}
        v2 = client.post("/v2/models/default/infer", json={"inputs": [two]})
        release.set()
        a.join(timeout=120)
        b.join(timeout=120)
        metrics = client.get("/metrics").text
    assert (answers["a"].status_code, answers["b"].status_code) == (200, 200)
    for refused in (flooded, v2):
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "limit of 2" in refused.json()["detail"]
    assert _counted(metrics, "/predict", "503") == 1.0

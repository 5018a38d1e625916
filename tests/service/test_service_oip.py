"""The Open Inference Protocol (KServe v2) routes: the spec's JSON shapes and datatypes, its
error form, and the same predictions as /predict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mpt.io import load_package, preprocess

pytestmark = pytest.mark.anyio

INFER = "/v2/models/default/infer"
TOP_9 = [{"name": "logits", "parameters": {"classification": 9}}]


def _request(data: list, shape: list[int], datatype: str = "FP32", **extra) -> dict:
    return {
        "inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


def _v2_problem(problem, response, status: int) -> dict:
    """A problem+json body that also carries the protocol's `error` message."""
    body = problem(response, status)
    assert body["error"] == body["detail"]
    return body


async def test_oip_server_health_and_metadata(live) -> None:
    assert (await live.client.get("/v2/health/live", headers={})).json() == {"live": True}
    ready = await live.client.get("/v2/health/ready", headers={})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    server = (await live.client.get("/v2")).json()
    assert server["name"] == "mpt-upgrades" and "classification" in server["extensions"]


async def test_oip_model_metadata_describes_input_and_outputs(live, packages) -> None:
    await live.register(packages.new)
    response = await live.client.get("/v2/models/default")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "default" and body["versions"] == ["1", "2"]
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert body["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, 5]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 5]},
    ]
    assert body["parameters"]["labels"] == ["0", "1", "2", "3", "4"]
    assert body["parameters"]["input_datatypes"] == ["FP32", "UINT8"]
    version = (await live.client.get("/v2/models/default/versions/2")).json()
    assert version["outputs"][0]["shape"] == [-1, 10] and version["parameters"]["version"] == "2"


async def test_oip_model_ready(live, packages, problem) -> None:
    await live.register(packages.new)
    ready = await live.client.get("/v2/models/default/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "default", "ready": True}
    assert (await live.client.get("/v2/models/default/versions/1/ready")).status_code == 200
    _v2_problem(problem, await live.client.get("/v2/models/default/versions/2/ready"), 400)
    _v2_problem(problem, await live.client.get("/v2/models/nope/ready"), 404)


async def test_oip_infer_fp32_matches_predict(live, packages) -> None:
    inputs = packages.model_inputs(packages.old, range(5), 4)
    body = _request(inputs.flatten().tolist(), list(inputs.shape), id="req-7")
    response = await live.client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        "default",
        "1",
        "req-7",
    )
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == {"logits", "probabilities"}
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["probabilities"]["shape"] == [4, 5]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(4, 5)
    predicted = (await live.predict(inputs)).json()["predictions"]
    for row, prediction in zip(probabilities, predicted, strict=True):
        assert int(row.argmax()) == prediction["index"]
        assert math.isclose(float(row.max()), prediction["score"], rel_tol=1e-5)


async def test_oip_infer_accepts_nested_data(live, packages) -> None:
    inputs = packages.model_inputs(packages.old, range(5), 2)
    flat = await live.client.post(INFER, json=_request(inputs.flatten().tolist(), [2, 1, 8, 8]))
    nested = await live.client.post(INFER, json=_request(inputs.tolist(), [2, 1, 8, 8]))
    assert nested.status_code == 200, nested.text
    assert nested.json()["outputs"] == flat.json()["outputs"]


async def test_oip_infer_uint8_is_normalised_by_the_server(live, packages) -> None:
    images = packages.test_images(range(5), 3)  # (3, 1, 8, 8) uint8 pixels
    body = _request(images.flatten().tolist(), [3, 1, 8, 8], "UINT8")
    body["outputs"] = [{"name": "logits"}]
    response = await live.client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    (logits,) = response.json()["outputs"]
    spec = load_package(packages.old).manifest.input
    with torch.no_grad():
        expected = load_package(packages.old).model(preprocess(images, spec))
    got = torch.tensor(logits["data"]).reshape(3, 5)
    assert torch.allclose(got, expected, atol=1e-4)


async def test_oip_infer_binary_input_matches_json(live, packages) -> None:
    inputs = packages.model_inputs(packages.old, range(5), 2)
    raw = inputs.numpy().astype("<f4").tobytes()
    header = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
    text = json.dumps(header).encode()
    response = await live.client.post(
        INFER,
        content=text + raw,
        headers={"Inference-Header-Content-Length": str(len(text)),
                 "content-type": "application/octet-stream"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    as_json = await live.client.post(INFER, json=_request(inputs.tolist(), [2, 1, 8, 8]))
    got = np.array(response.json()["outputs"][0]["data"])
    assert np.allclose(got, as_json.json()["outputs"][0]["data"], atol=1e-6)


async def test_oip_infer_classification_output(live, packages) -> None:
    inputs = packages.model_inputs(packages.old, range(5), 2)
    body = _request(inputs.tolist(), [2, 1, 8, 8])
    body["outputs"] = [{"name": "probabilities", "parameters": {"classification": 3}}]
    response = await live.client.post(INFER, json=body)
    (output,) = response.json()["outputs"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [2, 3])
    predicted = (await live.predict(inputs, top_k=3)).json()["predictions"]
    for i, prediction in enumerate(predicted):
        entries = [entry.split(":") for entry in output["data"][3 * i : 3 * i + 3]]
        assert [(int(j), label) for _, j, label in entries] == [
            (t["index"], t["label"]) for t in prediction["top_k"]
        ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_request([0.0] * 64, [1, 1, 8, 8]) | {"inputs": []}, "inputs"),
        ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "data": [0.0] * 64}]}, "datatype"),
        (_request([0.0] * 64, [1, 1, 8, 8]) | {"extra": 1}, "extra"),
        ({"inputs": [_request([0.0] * 64, [1, 1, 8, 8])["inputs"][0] | {"name": "x"}]}, "'x'"),
        (_request([0.0] * 64, [1, 1, 8, 8], "FP64"), "FP64"),
        (_request([0.0] * 192, [1, 3, 8, 8]), "[1, 3, 8, 8]"),
        (_request([0.0] * 63, [1, 1, 8, 8]), "63 values"),
        (_request([[0.0] * 8] * 7 + [[0.0] * 3], [1, 1, 8, 8]), "nested"),
        (_request([256] * 64, [1, 1, 8, 8], "UINT8"), "0..255"),
        (_request([0.5] * 64, [1, 1, 8, 8], "UINT8"), "integers"),
        (_request([0.0] * 64, [1, 1, 8, 8], outputs=[{"name": "scores"}]), "'scores'"),
        (_request([0.0] * 64, [1, 1, 8, 8], outputs=TOP_9), "0..5"),
    ],
)  # fmt: skip
async def test_oip_infer_malformed_request_is_422_naming_the_problem(
    live, problem, body, where
) -> None:
    response = await live.client.post(INFER, json=body)
    problem_body = _v2_problem(problem, response, 422)
    assert where in json.dumps(problem_body), problem_body


async def test_oip_infer_non_finite_fp32_is_422(live, problem) -> None:
    body = json.dumps(_request([0.0] * 63 + [math.nan], [1, 1, 8, 8])).encode()
    response = await live.client.post(
        INFER, content=body, headers={"content-type": "application/json"}
    )
    assert "NaN" in _v2_problem(problem, response, 422)["detail"]


async def test_oip_infer_unknown_model_is_404(live, problem) -> None:
    response = await live.client.post(
        "/v2/models/nope/infer", json=_request([0.0] * 64, [1, 1, 8, 8])
    )
    assert "nope" in _v2_problem(problem, response, 404)["error"]


async def test_oip_infer_needs_the_predict_scope(live, problem) -> None:
    body = _request([0.0] * 64, [1, 1, 8, 8])
    _v2_problem(
        problem, await live.client.post(INFER, json=body, headers={"Authorization": ""}), 401
    )
    read = live.key("read")
    _v2_problem(problem, await live.client.post(INFER, json=body, headers=read), 403)
    assert (
        await live.client.post(INFER, json=body, headers=live.key("predict"))
    ).status_code == 200

"""/predict over HTTP: JSON tensors and multipart images in, labels and scores out."""

from __future__ import annotations

import io
import math

import pytest
import starlette.formparsers
import torch
from PIL import Image

from mpt.io import load_package, preprocess

pytestmark = pytest.mark.anyio

OLD_LABELS = ["0", "1", "2", "3", "4"]

# /predict never closes the files its multipart parser spools (see
# test_predict_multipart_closes_its_spooled_files); the other multipart tests tolerate that.


@torch.no_grad()
def _logits(package, inputs: torch.Tensor) -> torch.Tensor:
    return load_package(package).model(inputs)


def _images(files: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]


async def test_predict_json_answers_every_input(live, packages) -> None:
    inputs = packages.model_inputs(packages.old, range(5), 4)
    response = await live.client.post("/predict", json={"inputs": inputs.tolist(), "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["release"] == 1 and body["label_space"] == 1
    assert len(body["predictions"]) == 4
    expected = _logits(packages.old, inputs).softmax(dim=1)
    for prediction, probabilities in zip(body["predictions"], expected, strict=True):
        assert prediction["index"] == int(probabilities.argmax())
        assert prediction["label"] == OLD_LABELS[prediction["index"]]
        assert math.isclose(prediction["score"], float(probabilities.max()), rel_tol=1e-4)
        top = prediction["top_k"]
        assert len(top) == 3 and top[0]["index"] == prediction["index"]
        assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
        assert all(t["label"] == OLD_LABELS[t["index"]] for t in top)


async def test_predict_named_deployment(live, packages) -> None:
    await live.create_deployment("other")
    await live.register(packages.new, "other", activate=True)
    inputs = packages.model_inputs(packages.new, range(10), 2)
    response = await live.predict(inputs, "/v1/deployments/other/predict", top_k=10)
    assert response.status_code == 200
    assert [len(p["top_k"]) for p in response.json()["predictions"]] == [10, 10]
    response = await live.predict(inputs, "/v1/deployments/default/predict", top_k=10)
    assert [len(p["top_k"]) for p in response.json()["predictions"]] == [5, 5]


async def test_predict_multipart_png_matches_json(live, packages, make) -> None:
    images = packages.test_images(range(5), 3)
    files = [make.png_of(image) for image in images]
    response = await live.client.post("/predict", files=_images(files))
    assert response.status_code == 200, response.text
    spec = load_package(packages.old).manifest.input
    expected = await live.predict(preprocess(images, spec))
    got = [(p["index"], round(p["score"], 5)) for p in response.json()["predictions"]]
    want = [(p["index"], round(p["score"], 5)) for p in expected.json()["predictions"]]
    assert got == want


async def test_predict_multipart_converts_and_resizes_to_the_spec(live, make) -> None:
    files = [make.png((24, 20), mode="RGB"), make.png((5, 7), mode="L", seed=1)]
    response = await live.client.post("/v1/deployments/default/predict", files=_images(files))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["release"] == 1 and len(body["predictions"]) == 2
    assert all(p["label"] in OLD_LABELS for p in body["predictions"])


async def test_predict_label_space_answers_in_the_old_classes(live, packages) -> None:
    await live.register(packages.new)
    await live.promote(2)
    inputs = packages.model_inputs(packages.new, range(5, 10), 20)

    response = await live.predict(inputs, top_k=10)
    assert response.status_code == 200
    body = response.json()
    assert body["release"] == 2 and body["label_space"] == 2
    assert {t["index"] for t in body["predictions"][0]["top_k"]} == set(range(10))
    assert any(p["index"] >= 5 for p in body["predictions"])

    response = await live.predict(inputs, top_k=10, label_space=1)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["release"] == 2 and body["label_space"] == 1
    logits = _logits(packages.new, inputs)[:, :5]
    for prediction, row in zip(body["predictions"], logits, strict=True):
        assert prediction["index"] == int(row.argmax()) < 5
        assert prediction["label"] == OLD_LABELS[prediction["index"]]
        assert len(prediction["top_k"]) == 5
        assert all(t["index"] < 5 for t in prediction["top_k"])


async def test_predict_label_space_of_unknown_release_is_404(live, problem) -> None:
    problem(await live.predict(torch.zeros(1, 1, 8, 8), label_space=9), 404)


async def test_predict_label_space_that_is_not_a_prefix_is_409(live, packages, problem) -> None:
    await live.register(packages.new)  # 10 labels: not a prefix of the served 5
    problem(await live.predict(torch.zeros(1, 1, 8, 8), label_space=2), 409)


async def test_predict_undecodable_image_is_422_naming_the_input(live, make, problem) -> None:
    files = [make.png(), b"this is no image", make.png(seed=2)]
    response = await live.client.post("/predict", files=_images(files))
    body = problem(response, 422)
    assert "input 1" in body["detail"]
    assert [(e["input"], e["file"]) for e in body["errors"]] == [(1, "1.png")]


async def test_predict_image_bomb_is_422(start_api, packages, make, problem) -> None:
    api = await start_api(max_image_pixels=32 * 32)
    await api.create_deployment("default")
    await api.register(packages.old, activate=True)
    response = await api.client.post("/predict", files=_images([make.png((64, 64))]))
    body = problem(response, 422)
    assert "exceeds" in body["detail"]


async def test_predict_wrong_tensor_shape_is_422_naming_the_input(live, problem) -> None:
    inputs = [torch.zeros(1, 8, 8).tolist(), torch.zeros(3, 8, 8).tolist()]
    response = await live.client.post("/predict", json={"inputs": inputs})
    body = problem(response, 422)
    assert "input 1" in body["detail"]
    assert body["errors"][0]["input"] == 1 and "(3, 8, 8)" in body["errors"][0]["problem"]


async def test_predict_ragged_input_is_422(live, problem) -> None:
    ragged = [[[0.0] * 8] * 7 + [[0.0] * 3]]
    response = await live.client.post("/predict", json={"inputs": [ragged]})
    body = problem(response, 422)
    assert body["errors"][0]["input"] == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
async def test_predict_non_finite_values_are_422(live, problem, value) -> None:
    row = ", ".join(["0.0"] * 7 + [value])
    image = "[" + ", ".join([f"[{row}]"] * 8) + "]"
    body = f'{{"inputs": [[{image}]]}}'.encode()
    response = await live.client.post(
        "/predict", content=body, headers={"content-type": "application/json"}
    )
    body = problem(response, 422)
    assert body["errors"][0]["input"] == 0
    assert "NaN" in body["errors"][0]["problem"]


@pytest.mark.parametrize(
    "payload", [{"inputs": []}, {"input": [1]}, {"inputs": [1], "top_k": 0}, [1, 2]]
)
async def test_predict_malformed_json_body_is_422(live, problem, payload) -> None:
    problem(await live.client.post("/predict", json=payload), 422)


async def test_predict_invalid_json_is_422(live, problem) -> None:
    response = await live.client.post(
        "/predict", content=b'{"inputs": [', headers={"content-type": "application/json"}
    )
    problem(response, 422)


@pytest.mark.parametrize("kind", ["text/plain", "application/octet-stream", "video/mp4"])
async def test_predict_other_content_type_is_415(live, problem, kind) -> None:
    response = await live.client.post("/predict", content=b"123", headers={"content-type": kind})
    problem(response, 415)


async def test_predict_without_body_is_415(live, problem) -> None:
    problem(await live.client.post("/predict"), 415)


async def test_predict_multipart_closes_its_spooled_files(live, make, monkeypatch) -> None:
    created = []

    class Recorded(starlette.formparsers.SpooledTemporaryFile):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", Recorded)
    response = await live.client.post("/predict", files=_images([make.png(), make.png(seed=1)]))
    assert response.status_code == 200
    unclosed = [file for file in created if not file.closed]
    for file in created:
        file.close()
    assert len(created) == 2
    assert not unclosed, f"{len(unclosed)} spooled upload file(s) left open after the response"


async def test_predict_multipart_without_files_is_422(live, problem) -> None:
    response = await live.client.post("/predict", files={"other": ("a.png", b"x")})
    problem(response, 422)


@pytest.fixture
async def small(start_api, packages):
    """A serving app whose /predict bodies are limited to 4 KiB."""
    api = await start_api(max_predict_bytes=4096)
    await api.create_deployment("default")
    await api.register(packages.old, activate=True)
    return api


async def test_predict_json_body_over_the_limit_is_413(small, problem) -> None:
    assert (await small.predict(torch.zeros(1, 1, 8, 8))).status_code == 200
    problem(await small.predict(torch.zeros(64, 1, 8, 8)), 413)


async def test_predict_multipart_body_over_the_limit_is_413(small, make, problem) -> None:
    response = await small.client.post("/predict", files=_images([make.png((64, 64))]))
    problem(response, 413)


async def test_predict_streamed_body_over_the_limit_is_413(small, problem) -> None:
    async def chunks():
        for _ in range(64):
            yield b" " * 1024

    response = await small.client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    problem(response, 413)


async def test_predict_unknown_deployment_is_404(live, problem) -> None:
    response = await live.predict(torch.zeros(1, 1, 8, 8), "/v1/deployments/nope/predict")
    body = problem(response, 404)
    assert "nope" in body["detail"]


async def test_predict_deployment_without_release_is_503(live, packages, problem) -> None:
    await live.create_deployment("empty")
    await live.register(packages.old, "empty")  # a candidate only
    response = await live.predict(torch.zeros(1, 1, 8, 8), "/v1/deployments/empty/predict")
    problem(response, 503)


async def test_predict_without_default_deployment_is_404(api, problem) -> None:
    problem(await api.predict(torch.zeros(1, 1, 8, 8)), 404)


async def test_predict_uses_the_configured_default_deployment(start_api, packages) -> None:
    api = await start_api(default_deployment="main")
    await api.create_deployment("main")
    await api.register(packages.new, "main", activate=True)
    response = await api.predict(torch.zeros(1, 1, 8, 8), top_k=10)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]["top_k"]) == 10


def _scores(response) -> list[tuple[int, float]]:
    assert response.status_code == 200, response.text
    return [(p["index"], round(p["score"], 5)) for p in response.json()["predictions"]]


@pytest.mark.parametrize("kind", ["image/png", "image/x-anything"])
async def test_predict_raw_image_body_matches_multipart(live, packages, make, kind) -> None:
    image = make.png_of(packages.test_images(range(5), 1)[0])
    raw = await live.client.post(
        "/predict", content=image, headers={"content-type": kind}, params={"top_k": 2}
    )
    assert [len(p["top_k"]) for p in raw.json()["predictions"]] == [2]
    assert _scores(raw) == _scores(await live.client.post("/predict", files=_images([image])))


async def test_predict_raw_body_that_is_no_image_is_422(live, problem) -> None:
    response = await live.client.post(
        "/predict", content=b"GIF89a?", headers={"content-type": "image/gif"}
    )
    assert "not a decodable image" in problem(response, 422)["detail"]


async def test_predict_multipart_top_k(live, make, problem) -> None:
    files = _images([make.png(), make.png(seed=1)])
    response = await live.client.post("/predict", files=files, data={"top_k": "3"})
    assert [len(p["top_k"]) for p in response.json()["predictions"]] == [3, 3]
    for bad in ("0", "101", "three"):
        response = await live.client.post("/predict", files=files, data={"top_k": bad})
        assert problem(response, 422)["errors"][0]["loc"] == ["body", "top_k"]


async def test_predict_image_with_exif_orientation_is_turned_upright(live, packages) -> None:
    upright = Image.fromarray(packages.test_images(range(5), 1)[0, 0].numpy(), "L")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with the tag that says: turn it 90 degrees clockwise to view
    tagged, plain = io.BytesIO(), io.BytesIO()
    stored.save(tagged, "PNG", exif=exif)
    upright.save(plain, "PNG")
    headers = {"content-type": "image/png"}
    got = await live.client.post("/predict", content=tagged.getvalue(), headers=headers)
    want = await live.client.post("/predict", content=plain.getvalue(), headers=headers)
    assert _scores(got) == _scores(want)

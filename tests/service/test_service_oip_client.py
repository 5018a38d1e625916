"""A client built for the Open Inference Protocol (`tritonclient`'s HTTP client, an optional
dev dependency) against a real `uvicorn` process: same predictions as /predict."""

from __future__ import annotations

import numpy as np
import pytest

http = pytest.importorskip("tritonclient.http", reason="the optional dev dependency")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


def test_oip_client_gets_the_same_predictions_as_predict(
    start_process, free_port, packages
) -> None:
    server = start_process(free_port)
    server.serve(packages.old)
    inputs = packages.model_inputs(packages.old, range(5), 6).numpy()
    with server.client() as plain:
        predicted = plain.post("/predict", json={"inputs": inputs.tolist()}).json()

    headers = {"Authorization": server.client().headers["Authorization"]}
    client = http.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live(headers=headers)
        assert client.is_model_ready("default", headers=headers)
        metadata = client.get_model_metadata("default", headers=headers)
        assert metadata["inputs"][0]["shape"] == [-1, 1, 8, 8]
        for binary in (False, True):
            tensor = http.InferInput("input", list(inputs.shape), "FP32")
            tensor.set_data_from_numpy(inputs, binary_data=binary)
            outputs = [http.InferRequestedOutput("probabilities", binary_data=False)]
            result = client.infer("default", [tensor], outputs=outputs, headers=headers)
            probabilities = result.as_numpy("probabilities")
            assert probabilities.shape == (6, 5)
            assert probabilities.argmax(1).tolist() == [
                p["index"] for p in predicted["predictions"]
            ]
            assert np.allclose(
                probabilities.max(1), [p["score"] for p in predicted["predictions"]], atol=1e-5
            )
            assert result.get_response()["model_version"] == "1"
        wrong = http.InferInput("input", [1, 3, 8, 8], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
        with pytest.raises(InferenceServerException, match=r"expected \[N, 1, 8, 8\]"):
            client.infer("default", [wrong], headers=headers)
    finally:
        client.close()

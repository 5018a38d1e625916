"""A TorchServe handler doing the work of `/predict` on the same JSON body: read the inputs,
check their shape, build the batch, run the TorchScript model, and answer each request
with its label, index, score and top 5 (`{"release", "label_space", "predictions"}`).

It runs inside TorchServe's worker, which imports it by path: standard library, numpy and
torch only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

SHAPE = (3, 32, 32)
TOP_K = 5


class Handler(BaseHandler):  # type: ignore[misc]
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        rows = []
        for request in data:
            body = request.get("body") or request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            inputs = np.asarray(body["inputs"], dtype=np.float32)
            if inputs.shape[1:] != SHAPE or not np.isfinite(inputs).all():
                raise ValueError(f"inputs of shape {inputs.shape}, expected (N, 3, 32, 32)")
            rows.append(inputs)
        self._sizes = [len(r) for r in rows]
        return torch.from_numpy(np.concatenate(rows))

    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = data.float().softmax(dim=1)
        scores, indices = probabilities.topk(min(TOP_K, probabilities.shape[1]), dim=1)
        answers, start = [], 0
        for size in self._sizes:
            predictions = []
            rows = zip(scores[start : start + size].tolist(),
                       indices[start : start + size].tolist(), strict=True)  # fmt: skip
            for row_s, row_j in rows:
                top = [{"label": f"class-{j}", "index": j, "score": s}
                       for s, j in zip(row_s, row_j, strict=True)]  # fmt: skip
                predictions.append({**top[0], "top_k": top})
            answers.append({"release": 1, "label_space": 1, "predictions": predictions})
            start += size
        return answers

"""The Open Inference Protocol (KServe v2) over HTTP: its JSON in, model-ready tensors out,
and logits back into its JSON.

One input, `input`, of shape (N, C, H, W) as the release's manifest describes: `FP32` values
already normalised for the model, or `UINT8` pixels that the server normalises with the
manifest's mean and std. Its data may be nested or flat (row-major) in the JSON, or raw
little-endian bytes after the JSON header (the binary tensor extension: the
`Inference-Header-Content-Length` header and a `binary_data_size` parameter). Two outputs,
`logits` and `probabilities` (FP32, (N, classes)); either may ask for
`{"classification": k}`, which answers the k best as BYTES `"score:index:label"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from mpt.io import InputSpec, preprocess
from service.errors import Unprocessable
from service.jsonio import parse_json
from service.serving.holder import ServedModel
from service.serving.inputs import numbers

__all__ = [
    "INPUT",
    "OUTPUTS",
    "InferRequest",
    "Parsed",
    "infer_response",
    "model_metadata",
    "parse_infer",
]

INPUT = "input"
OUTPUTS = ("logits", "probabilities")
_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "FP32": (torch.float32, "<f4"),
    "UINT8": (torch.uint8, "u1"),
}


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    """An inference request of the protocol (its `inputs` checked further by `parse_infer`)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True)
class Parsed:
    """A checked request: model-ready inputs (N, C, H, W), its id, the outputs to answer
    with their classification count (0: the tensor itself)."""

    inputs: Tensor
    id: str | None
    outputs: tuple[tuple[str, int], ...]


def _problem(detail: str, field: str) -> Unprocessable:
    return Unprocessable(detail, errors=[{"loc": field.split("."), "msg": detail}])


def _header(body: bytes, header_length: int | None) -> tuple[InferRequest, bytes]:
    cut = len(body) if header_length is None else header_length
    if not 0 <= cut <= len(body):
        raise _problem(
            f"Inference-Header-Content-Length is {header_length}, but the body has "
            f"{len(body)} bytes",
            "header.Inference-Header-Content-Length",
        )
    try:
        request = InferRequest.model_validate(parse_json(body[:cut]))
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors()[:5])
        raise Unprocessable(
            f"the inference request does not follow the protocol: {where}",
            errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    return request, body[cut:]


def _binary(item: RequestInput, raw: bytes, dtype: str) -> Tensor:
    size = item.parameters.get("binary_data_size")
    if not isinstance(size, int) or size != len(raw):
        raise _problem(
            f"binary_data_size is {size!r}, but {len(raw)} bytes follow the JSON header",
            "inputs.0.parameters.binary_data_size",
        )
    count = int(np.prod(item.shape))
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise _problem(
            f"{len(raw)} bytes do not hold shape {item.shape} of {item.datatype}",
            "inputs.0.shape",
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=dtype).copy())


def _json_data(item: RequestInput, dtype: torch.dtype) -> Tensor:
    if item.data is None:
        raise _problem("the input has neither data nor binary data", "inputs.0.data")
    values = numbers(item.data)
    if values is None:
        raise _problem("data is not a (nested) list of numbers of one shape", "inputs.0.data")
    if dtype.is_floating_point:
        return torch.from_numpy(values.astype(np.float32).reshape(-1))
    if values.dtype.kind == "f":
        raise _problem(f"{item.datatype} data must be integers", "inputs.0.data")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise _problem("UINT8 data must lie in 0..255", "inputs.0.data")
    return torch.from_numpy(values.astype(np.uint8).reshape(-1))


def _tensor(item: RequestInput, raw: bytes, spec: InputSpec) -> Tensor:
    """The input as model-ready floats (N, C, H, W)."""
    if item.name != INPUT:
        raise _problem(
            f"unknown input {item.name!r}; the model has one, {INPUT!r}", "inputs.0.name"
        )
    if item.datatype not in _DTYPES:
        raise _problem(
            f"datatype {item.datatype!r} is not accepted; send FP32 (normalised) or UINT8 (pixels)",
            "inputs.0.datatype",
        )
    dtype, numpy_dtype = _DTYPES[item.datatype]
    expected = [spec.channels, spec.height, spec.width]
    if len(item.shape) != 4 or item.shape[1:] != expected or item.shape[0] < 1:
        raise _problem(
            f"shape {item.shape}, expected [N, {', '.join(map(str, expected))}]", "inputs.0.shape"
        )
    values = _binary(item, raw, numpy_dtype) if raw else _json_data(item, dtype)
    if values.numel() != int(np.prod(item.shape)):
        raise _problem(f"{values.numel()} values do not fill shape {item.shape}", "inputs.0.data")
    tensor = values.reshape(item.shape)
    if dtype == torch.uint8:
        return preprocess(tensor, spec)
    if not bool(torch.isfinite(tensor).all()):
        raise _problem("data contains NaN or infinite values", "inputs.0.data")
    return tensor


def _outputs(request: InferRequest, classes: int) -> tuple[tuple[str, int], ...]:
    if request.outputs is None:
        return tuple((name, 0) for name in OUTPUTS)
    chosen = []
    for i, output in enumerate(request.outputs):
        if output.name not in OUTPUTS:
            raise _problem(
                f"unknown output {output.name!r}; the model has {list(OUTPUTS)}",
                f"outputs.{i}.name",
            )
        k = output.parameters.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= classes:
            raise _problem(
                f"classification must be an integer in 0..{classes}, got {k!r}",
                f"outputs.{i}.parameters.classification",
            )
        chosen.append((output.name, k))
    return tuple(chosen)


def parse_infer(body: bytes, header_length: int | None, spec: InputSpec, classes: int) -> Parsed:
    """Check an inference request against the protocol and the release's input spec."""
    request, raw = _header(body, header_length)
    if len(request.inputs) != 1:
        raise _problem(
            f"{len(request.inputs)} inputs given; the model has one, {INPUT!r}", "inputs"
        )
    inputs = _tensor(request.inputs[0], raw, spec)
    return Parsed(inputs, request.id, _outputs(request, classes))


def _classified(scores: Tensor, k: int, labels: tuple[str, ...]) -> list[str]:
    top, index = scores.topk(min(k, scores.shape[1]), dim=1)
    return [
        f"{s:f}:{j}:{labels[j]}"
        for row_s, row_j in zip(top.tolist(), index.tolist(), strict=True)
        for s, j in zip(row_s, row_j, strict=True)
    ]


def infer_response(
    name: str, parsed: Parsed, logits: Tensor, served: ServedModel
) -> dict[str, Any]:
    """The protocol's answer for `logits` (N, classes) computed by `served`."""
    tensors = {"logits": logits, "probabilities": logits.softmax(dim=1)}
    outputs = []
    for output, k in parsed.outputs:
        values = tensors[output]
        if k:
            data: list[Any] = _classified(values, k, served.labels)
            shape = [len(values), len(data) // len(values)]
            outputs.append({"name": output, "datatype": "BYTES", "shape": shape, "data": data})
        else:
            outputs.append(
                {
                    "name": output,
                    "datatype": "FP32",
                    "shape": list(values.shape),
                    "data": values.flatten().tolist(),
                }
            )
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(served.version),
        "outputs": outputs,
    }
    if parsed.id is not None:
        answer["id"] = parsed.id
    return answer


def model_metadata(
    name: str, version: int, labels: list[str], spec: InputSpec, versions: list[int]
) -> dict[str, Any]:
    """The protocol's model metadata, with the labels and the input's normalisation as
    parameters (the protocol leaves room for them)."""
    shape = [-1, spec.channels, spec.height, spec.width]
    classes = [-1, len(labels)]
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "pytorch",
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": shape}],
        "outputs": [{"name": o, "datatype": "FP32", "shape": classes} for o in OUTPUTS],
        "parameters": {
            "version": str(version),
            "labels": labels,
            "input_datatypes": list(_DTYPES),
            "mean": list(spec.mean),
            "std": list(spec.std),
        },
    }

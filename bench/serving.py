"""Throughput and latency of `/predict` and `/v2/models/{name}/infer` against a real
`uvicorn` process on loopback, beside the bare model's forward pass in the same run.

    python -m bench.serving --out docs/results/serving.md

For each architecture: one API process with the default batching (64 inputs / 5 ms), one
3x32x32 image per request as JSON, a closed-loop load generator (`bench.load`) in its own
process at each concurrency. Two limits beside each run: the forward passes inside the
server during that run (its `mpt_predict_forward_seconds_total` against the inputs
answered: the model's share of the same CPU under the same load), and, with the server
stopped, the bare forward pass at the mean batch size the batcher formed, in this process
with the same torch threads (best of five windows). `--torchserve` adds TorchServe, with the
same weights and batching, when it is installed (see bench/torchserve/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.servers import ADMIN, CIFAR_SPEC, api_processes, deploy, make_package, wait_ready
from mpt.io import load_package

ARCHS = ("small_cnn", "resnet18", "cifar_resnet18")
AUTH = f"Authorization: {ADMIN['Authorization']}"


def bodies(seed: int = 0) -> dict[str, bytes]:
    """One normalised 3x32x32 input as the body of each route."""
    torch.manual_seed(seed)
    image = torch.randn(3, 32, 32)
    v2 = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                      "data": image.flatten().tolist()}]}  # fmt: skip
    return {
        "/predict": json.dumps({"inputs": [image.tolist()]}).encode(),
        "/v2/models/default/infer": json.dumps(v2).encode(),
    }


def load(url: str, body: Path, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """One closed-loop run of `bench.load` in its own process."""
    command = [sys.executable, "-m", "bench.load", "--url", url, "--body", str(body),
               "--concurrency", str(concurrency), "--seconds", str(seconds),
               "--warmup", str(warmup), "--header", AUTH]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def counters(url: str) -> dict[str, float]:
    """Totals from /metrics: batch sizes requests shared (sum, count), inputs answered, and
    forward-pass seconds (each request's share)."""
    wanted = {
        "mpt_predict_batch_size_sum": "batch_sum",
        "mpt_predict_batch_size_count": "batch_count",
        "mpt_predictions_total": "inputs",
        "mpt_predict_forward_seconds_total": "forward_seconds",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name = line.split("{", 1)[0]
        if name in wanted:
            totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return totals


@torch.inference_mode()
def forward_rate(
    model: torch.nn.Module, batch: int, seconds: float = 3.0, device: str = "cpu"
) -> float:
    """Images per second of the bare forward pass at `batch` inputs: the best of five
    windows, so that other work on a shared machine counts as little as it can. On a GPU
    the input is copied there and the logits back, as the server does."""
    model = model.to(device)
    inputs = torch.randn(batch, CIFAR_SPEC.channels, CIFAR_SPEC.height, CIFAR_SPEC.width)
    for _ in range(3):
        model(inputs.to(device)).cpu()
    best = 0.0
    for _ in range(5):
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            model(inputs.to(device)).cpu()
            runs += 1
        best = max(best, runs * batch / elapsed)
    return best


def _measure(
    url: str, route: str, body: Path, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One load run; with one API process, its batch sizes and forward-pass time from
    /metrics (with several, each process counts alone and /metrics shows one of them)."""
    server = "mpt" if args.workers == 1 else f"mpt, {args.workers} processes"
    row: dict[str, Any] = {"server": server, "route": route}
    if args.workers > 1:
        return row | load(url + route, body, concurrency, args.seconds, args.warmup)
    before = counters(url)
    result = load(url + route, body, concurrency, args.seconds, args.warmup)
    delta = {key: value - before[key] for key, value in counters(url).items()}
    return row | {
        "mean_batch": delta["batch_sum"] / max(delta["batch_count"], 1),
        "forward_per_second": delta["inputs"] / delta["forward_seconds"],
        **result,
    }


def bench_service(arch: str, folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    package = make_package(folder / f"{arch}.zip", arch)
    rows = []
    files = {}
    for route, body in bodies().items():
        files[route] = folder / f"{route.strip('/').replace('/', '-')}.json"
        files[route].write_bytes(body)
    device = {"MPT_SERVING_DEVICE": args.device}
    with api_processes(folder / f"var-{arch}", 1, args.workers, **device) as (server,):
        deploy(server.url, [package])
        wait_ready([server.url])
        for route in args.routes:
            for concurrency in args.concurrency:
                rows.append(_measure(server.url, route, files[route], concurrency, args))
                rows[-1]["arch"] = arch
                print(json.dumps(rows[-1]), flush=True)
    model = load_package(package).model.eval()
    for row in rows:
        if "mean_batch" not in row:
            continue
        batch = max(1, round(row["mean_batch"]))
        row["limit_batch"] = batch
        row["limit_per_second"] = forward_rate(model, batch, args.limit_seconds, args.device)
    return rows


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _rate(row: dict[str, Any], key: str) -> list[str]:
    limit = row.get(key)
    return [f"{limit:.0f}", f"{row['per_second'] / limit:.2f}"] if limit else ["-", "-"]


def _cells(row: dict[str, Any]) -> list[str]:
    batch = f"{row['mean_batch']:.1f}" if "mean_batch" in row else "-"
    return [row["arch"], row["server"], f"`{row['route']}`", str(row["concurrency"]),
            f"{row['per_second']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
            str(row["errors"]), batch, *_rate(row, "forward_per_second"),
            *_rate(row, "limit_per_second")]  # fmt: skip


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = [
        "| arch | server | route | concurrency | images/s | p50 ms | p99 ms | errors "
        "| mean batch | forward pass in the server, images/s | service / that "
        "| bare forward at that batch, images/s | service / bare |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines = ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    facts = [f"- {key}: {value}" for key, value in meta.items()]
    return "\n".join([*facts, "", *head, *lines, ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--routes", nargs="+", default=list(bodies()))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--limit-seconds", type=float, default=3.0)
    parser.add_argument("--torchserve", action="store_true", help="also TorchServe if installed")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads of every process (OMP_NUM_THREADS): on a busy 2-core "
        "machine two spin-waiting threads can make a forward pass tens of times slower",
    )  # fmt: skip
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="where the server (MPT_SERVING_DEVICE) and the bare forward pass run",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=1, help="API processes behind the port (serve --workers)"
    )
    parser.add_argument("--out", type=Path, help="write the table (markdown) here")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the servers inherit it
    torch.set_num_threads(args.threads)
    meta = {"command": " ".join(["python -m bench.serving", *(argv or sys.argv[1:])]),
            "load before": _uptime(), "torch threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "device": _device_name(args.device),
            "API processes": args.workers}  # fmt: skip
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            rows += bench_service(arch, Path(folder), args)
            if args.torchserve:
                from bench.torchserve import bench_torchserve

                rows += bench_torchserve(arch, Path(folder), args)
    meta["load after"] = _uptime()
    table = render(rows, meta)
    print(table)
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        args.out.write_text(table)


if __name__ == "__main__":
    main()

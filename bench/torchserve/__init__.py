"""TorchServe beside the service (`python -m bench.serving --torchserve`): the same weights
as TorchScript, the same JSON body, `handler.py` doing the same work, and its dynamic
batching set to the service's size and delay (64 inputs, 5 ms).

Needs the `bench` extra (`pip install -e '.[bench]'`: torchserve, torch-model-archiver) and
Java 17 on the PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.servers import CIFAR_SPEC, free_port
from mpt.io import load_package

HANDLER = Path(__file__).with_name("handler.py")


def _archive(package: Path, folder: Path) -> Path:
    model = load_package(package).model.eval()
    example = torch.zeros(1, CIFAR_SPEC.channels, CIFAR_SPEC.height, CIFAR_SPEC.width)
    scripted = folder / "model.pt"
    torch.jit.trace(model, example).save(str(scripted))
    store = folder / "store"
    store.mkdir(exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", "model",
         "--version", "1", "--serialized-file", str(scripted), "--handler", str(HANDLER),
         "--export-path", str(store), "--force"],
        check=True, capture_output=True,
    )  # fmt: skip
    return store


def _config(folder: Path, port: int, batch: int, delay_ms: int) -> Path:
    models = {"model": {"1": {"marName": "model.mar", "minWorkers": 1, "maxWorkers": 1,
                               "batchSize": batch, "maxBatchDelay": delay_ms,
                               "responseTimeout": 120}}}  # fmt: skip
    config = folder / "config.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{free_port()}\n"
        f"metrics_address=http://127.0.0.1:{free_port()}\n"
        "disable_token_authorization=true\n"
        "install_py_dep_per_model=false\n"
        "load_models=model.mar\n"
        f"models={json.dumps(models)}\n"
    )
    return config


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"torchserve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).json().get("status") == "Healthy":
                body = {"inputs": [[[[0.0] * 32] * 32] * 3]}
                if httpx.post(f"{url}/predictions/model", json=body, timeout=60).is_success:
                    return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"torchserve did not become healthy:\n{log.read_text()[-3000:]}")


def bench_torchserve(arch: str, folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The closed-loop runs of bench.serving against TorchServe serving `arch`."""
    from bench.serving import bodies, load

    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java 17 on the PATH")
    work = folder / f"torchserve-{arch}"
    work.mkdir()
    store = _archive(folder / f"{arch}.zip", work)
    port = free_port()
    config = _config(work, port, batch=64, delay_ms=5)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = work / "torchserve.log"
    command = [str(Path(sys.executable).parent / "torchserve"), "--start", "--foreground",
               "--ncs", "--model-store", str(store), "--ts-config", str(config),
               "--disable-token-auth"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, cwd=work, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        _wait(url, process, log)
        body = work / "body.json"
        body.write_bytes(bodies()["/predict"])
        for concurrency in args.concurrency:
            result = load(f"{url}/predictions/model", body, concurrency, args.seconds, args.warmup)
            rows.append({"arch": arch, "server": "torchserve", "route": "/predictions/model",
                         **result})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "torchserve"), "--stop"],
                       env=env, cwd=work, capture_output=True)  # fmt: skip
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return rows

"""Where a `/predict` request's time goes: py-spy samples of the API process under load.

    python -m bench.serving_profile --arch small_cnn --route /predict --concurrency 32

Starts one API process, loads it with `bench.load` (its own process), and records the API
process with py-spy (`pip install py-spy`; it reads another process's memory, so the
machine must allow ptrace of a child). `--gil` (the default) samples only the thread that
holds the GIL: the Python work that the 2 cores serialise on. Each sample goes to the
innermost step of the request it is in; the table gives each step's share.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import ADMIN, api_processes, deploy, make_package, wait_ready
from bench.serving import bodies

# (step, markers): a frame whose text contains a marker belongs to that step; the innermost
# matching frame of a sample decides.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("forward pass", ("ServedModel.logits", "_forward ")),
    ("JSON parse", ("parse_json", "JSONDecoder")),
    (
        "input checks and tensor building",
        ("json_to_inputs", "numbers ", "parse_infer", "model_validate"),
    ),
    (
        "answer: softmax, top-k, render",
        ("_answer", "predictions ", "infer_response", "json_response"),
    ),
    ("auth (cached key)", ("require_scope", "KeyCache")),
    ("micro-batcher", ("MicroBatcher",)),
    ("request id, access log, metrics", ("RequestContext", "logging/")),
    ("HTTP parsing and writing (uvicorn)", ("uvicorn/protocols",)),
    ("routing, dependencies, middleware (FastAPI, Starlette)", ("fastapi/", "starlette/")),
    ("event loop, thread hand-offs", ("asyncio/", "anyio/", "concurrent/", "threading")),
]


def step_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for step, markers in STEPS:
            if any(marker in frame for marker in markers):
                return step
    return "other"


def shares(raw: Path) -> tuple[int, dict[str, int]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[step_of(stack.split(";"))] += int(count)
    return sum(counts.values()), dict(counts.most_common())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--route", default="/predict")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--all-threads", action="store_true", help="not only the GIL holder")
    parser.add_argument("--samples", type=Path, help="also keep py-spy's raw samples here")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        package = make_package(root / "model.zip", args.arch)
        body = root / "body.json"
        body.write_bytes(bodies()[args.route])
        with api_processes(root / "var") as (server,):
            deploy(server.url, [package])
            wait_ready([server.url])
            load = subprocess.Popen(
                [sys.executable, "-m", "bench.load", "--url", server.url + args.route,
                 "--body", str(body), "--concurrency", str(args.concurrency),
                 "--seconds", str(args.seconds + 2), "--warmup", "1",
                 "--header", f"Authorization: {ADMIN['Authorization']}"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(2)
            raw = root / "samples.txt"
            command = [spy, "record", "--pid", str(server.process.pid), "--format", "raw",
                       "--rate", "200", "--duration", str(int(args.seconds)),
                       "--output", str(raw), "--nonblocking"]  # fmt: skip
            if not args.all_threads:
                command.append("--gil")
            subprocess.run(command, check=True, capture_output=True)
            print(load.communicate()[0].strip())
            total, counts = shares(raw)
            if args.samples is not None:
                shutil.copyfile(raw, args.samples)
    print(f"\n{total} samples ({'all threads' if args.all_threads else 'GIL holder'})\n")
    print("| step | share |\n|---|---:|")
    for step, count in counts.items():
        print(f"| {step} | {100 * count / total:.1f}% |")


if __name__ == "__main__":
    main()

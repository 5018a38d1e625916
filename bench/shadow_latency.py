"""What shadowing costs the answer: `/predict` latency with no shadow, and with a candidate
shadowed on 10% and on 100% of the inputs, against one real `uvicorn` process, the load
generator in its own process (`bench.load`), one 3x32x32 input per request.

    python -m bench.shadow_latency --arch cifar_resnet18 --out docs/results/shadow-latency.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ADMIN, api_processes, deploy, make_package, wait_ready
from bench.serving import bodies, load

RATES = (None, 0.1, 1.0)


def _shadow(url: str, rate: float | None) -> None:
    path = f"{url}/v1/deployments/default/releases/2/shadow"
    with httpx.Client(headers=ADMIN, timeout=60) as client:
        if rate is None:
            client.delete(path)
            return
        response = client.post(path, json={"sample_rate": rate, "threshold": 0.5})
        response.raise_for_status()


def _seen(url: str) -> dict[str, Any]:
    path = f"{url}/v1/deployments/default/releases/2/shadow"
    body: dict[str, Any] = httpx.get(path, headers=ADMIN, timeout=60).json()
    return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="cifar_resnet18")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        old = make_package(root / "old.zip", args.arch, num_classes=10, seed=0)
        new = make_package(root / "new.zip", args.arch, num_classes=10, seed=1)
        body = root / "body.json"
        body.write_bytes(bodies()["/predict"])
        with api_processes(root / "var", 1, MPT_RELEASE_POLL_SECONDS="0.2") as servers:
            url = servers[0].url
            deploy(url, [old, new])
            wait_ready([url])
            for rate in RATES:
                _shadow(url, rate)
                time.sleep(1.0)  # every poll has started (or stopped) the runner
                for concurrency in args.concurrency:
                    result = load(f"{url}/predict", body, concurrency, args.seconds, args.warmup)
                    rows.append({"rate": rate, "concurrency": concurrency, **result})
                if rate is not None:
                    time.sleep(1.0)
                    rows[-1]["shadow"] = _seen(url)
    text = _render(args, rows)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))


def _render(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    base = {r["concurrency"]: r for r in rows if r["rate"] is None}
    lines = [
        "# What shadowing costs the answer",
        "",
        f"`/predict` with `{args.arch}` (untrained weights: the forward pass is what costs), one "
        "3x32x32 input per request, against one `uvicorn` process on loopback; the load "
        "generator (`bench.load`) in its own process, a closed loop over keep-alive "
        f"connections, {args.seconds:g} s per row after {args.warmup:g} s of warm-up. The "
        "shadowed candidate is the same architecture, run by a thread of the API process.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average before the "
        f"run {os.getloadavg()[0]:.2f}. Command: `python -m bench.shadow_latency --arch "
        f"{args.arch}`",
        "",
        "| shadowed | concurrency | images/s | p50 ms | p99 ms | p99 against no shadow |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = "none" if r["rate"] is None else f"{r['rate']:.0%}"
        ratio = r["p99_ms"] / base[r["concurrency"]]["p99_ms"]
        lines.append(
            f"| {rate} | {r['concurrency']} | {r['per_second']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {ratio:.2f}x |"
        )
    shadows = [r["shadow"] for r in rows if "shadow" in r]
    tallies = "; ".join(f"{s['seen']} seen, {s['dropped']} dropped" for s in shadows)
    lines += [
        "",
        f"Shadowed inputs and drops, from the tally after each shadowed run: {tallies}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

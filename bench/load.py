"""A lean HTTP/1.1 load generator, run as its own process so it does not share an
interpreter (or a GIL) with the server it measures.

    python -m bench.load --url http://127.0.0.1:8000/predict --body body.json \
        --concurrency 32 --seconds 10 [--header 'Authorization: Bearer ...']

`concurrency` keep-alive connections each send the same POST again as soon as the previous
answer has come back (a closed loop). Prints one JSON line: requests, errors, images/s and
latency percentiles in ms. Plain asyncio streams and a prebuilt request: the client spends
far less CPU per request than an HTTP library would, which matters on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit


def request_bytes(url: str, body: bytes, content_type: str, headers: list[str]) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, request: bytes, stop: float, warm: float,
                  latencies: list[float], errors: list[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < stop:
            status = await _one(reader, writer, request)
            if now >= warm:
                if status == 200:
                    latencies.append(time.perf_counter() - now)
                else:
                    errors.append(status)
    finally:
        writer.close()


async def run(url: str, request: bytes, concurrency: int, seconds: float, warmup: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    warm, stop = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *(_worker(host, port, request, stop, warm, latencies, errors) for _ in range(concurrency))
    )
    measured = time.perf_counter() - warm
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "error_statuses": sorted(set(errors)),
        "per_second": len(latencies) / measured,
        "p50_ms": 1000 * cuts[49],
        "p99_ms": 1000 * cuts[98],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="a file holding the request body")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    with open(args.body, "rb") as file:
        body = file.read()
    request = request_bytes(args.url, body, args.content_type, args.header)
    result = asyncio.run(run(args.url, request, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

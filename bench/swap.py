"""Swap under load: constant load from several clients while the deployment is promoted and
rolled back, on one API process or on two sharing one database.

    python -m bench.swap --clients 8 --swaps 20 --processes 1
    python -m bench.swap --clients 8 --swaps 20 --processes 2 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Every answer names the release that computed it. The check: no request fails; on the
process that swapped, no request that started after a swap call returned names the release
that swap replaced; on the other processes, none does later than the poll interval (plus
`--slack` for loading the model) after the swap; and the p99 latency while swapping against
the p99 of the steady load before and after.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ADMIN, api_processes, deploy, make_package, wait_ready


@dataclass(frozen=True)
class Answer:
    server: int
    started: float
    finished: float
    status: int
    release: int | None


@dataclass(frozen=True)
class Swap:
    started: float
    finished: float
    version: int  # the release active once the call returned


@dataclass
class SwapRun:
    answers: list[Answer] = field(default_factory=list)
    swaps: list[Swap] = field(default_factory=list)


def _client_loop(url: str, server: int, body: dict[str, Any], stop: threading.Event,
                 out: list[Answer]) -> None:  # fmt: skip
    with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = client.post("/predict", json=body)
                status = response.status_code
                release = response.json().get("release") if status == 200 else None
            except httpx.HTTPError:
                status, release = 0, None
            out.append(Answer(server, started, time.perf_counter(), status, release))


def _swap_loop(url: str, swaps: int, pause: float, out: list[Swap]) -> None:
    with httpx.Client(base_url=url, headers=ADMIN, timeout=120) as client:
        for i in range(swaps):
            time.sleep(pause)
            started = time.perf_counter()
            if i % 2 == 0:
                body = {"force": True, "reason": "swap benchmark"}
                response = client.post("/v1/deployments/default/releases/2/promote", json=body)
            else:
                response = client.post("/v1/deployments/default/rollback")
            response.raise_for_status()
            out.append(Swap(started, time.perf_counter(), response.json()["version"]))


def run_swaps(urls: list[str], *, clients: int, swaps: int, pause: float, steady: float,
              body: dict[str, Any]) -> SwapRun:  # fmt: skip
    """Load every process in `urls` with `clients` clients in all; after `steady` seconds,
    swap `swaps` times through the first process, `pause` seconds apart; `steady` seconds
    more of load after the last."""
    wait_ready(urls)
    run, stop = SwapRun(), threading.Event()
    loaders = [
        threading.Thread(target=_client_loop, args=(urls[i % len(urls)], i % len(urls), body,
                                                     stop, run.answers))
        for i in range(clients)
    ]  # fmt: skip
    for thread in loaders:
        thread.start()
    time.sleep(steady)
    _swap_loop(urls[0], swaps, pause, run.swaps)
    time.sleep(steady)
    stop.set()
    for thread in loaders:
        thread.join()
    return run


def _allowed(answer: Answer, swaps: list[Swap], lag: float, first: int) -> set[int]:
    """Releases `answer` may name: the one the last swap visible `lag` seconds before the
    request started made active, and any a later swap made active before it finished."""
    visible = [s for s in swaps if s.finished + lag < answer.started]
    allowed = {visible[-1].version if visible else first}
    allowed |= {s.version for s in swaps if s.started < answer.finished and s not in visible}
    return allowed


def stale_answers(run: SwapRun, *, lag: float, server: int, first: int = 1) -> list[Answer]:
    """Answers of `server` naming a release that a swap visible `lag` seconds before the
    request started had already replaced."""
    return [
        a for a in run.answers
        if a.server == server and a.status == 200
        and a.release not in _allowed(a, run.swaps, lag, first)
    ]  # fmt: skip


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100)[98]


def summary(run: SwapRun, *, poll: float, slack: float, processes: int) -> dict[str, Any]:
    ok = [a for a in run.answers if a.status == 200]
    begin, end = run.swaps[0].started, run.swaps[-1].finished
    during = [a.finished - a.started for a in ok if begin <= a.started <= end]
    steady = [a.finished - a.started for a in ok if not begin <= a.started <= end]
    return {
        "requests": len(run.answers),
        "failed": sum(a.status != 200 for a in run.answers),
        "unnamed": sum(a.release not in (1, 2) for a in ok),
        "stale on the swapping process": len(stale_answers(run, lag=0.0, server=0)),
        "stale on the others past poll + slack": sum(
            len(stale_answers(run, lag=poll + slack, server=s)) for s in range(1, processes)
        ),
        "swaps": len(run.swaps),
        "p99 steady (ms)": round(1000 * _p99(steady), 1),
        "p99 during swaps (ms)": round(1000 * _p99(during), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between swaps")
    parser.add_argument("--steady", type=float, default=3.0, help="seconds before and after")
    parser.add_argument("--poll", type=float, default=1.0, help="MPT_RELEASE_POLL_SECONDS")
    parser.add_argument("--slack", type=float, default=1.0, help="seconds to load a model")
    parser.add_argument("--database-url", default="", help="shared database (default SQLite)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        packages = [make_package(root / f"r{i}.zip", args.arch, seed=i) for i in (1, 2)]
        variables = {"MPT_RELEASE_POLL_SECONDS": str(args.poll)}
        if args.database_url:
            variables["MPT_DATABASE_URL"] = args.database_url
        with api_processes(root / "var", args.processes, **variables) as servers:
            deploy(servers[0].url, packages)
            body = {"inputs": [[[[0.0] * 32] * 32] * 3]}
            run = run_swaps([s.url for s in servers], clients=args.clients, swaps=args.swaps,
                            pause=args.pause, steady=args.steady, body=body)  # fmt: skip
    report = summary(run, poll=args.poll, slack=args.slack, processes=args.processes)
    for key, value in report.items():
        print(f"{key:>40}: {value}")


if __name__ == "__main__":
    main()

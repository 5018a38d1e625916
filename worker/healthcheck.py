"""The worker image's health check: `python -m worker.healthcheck` exits 0 when the Celery
worker on this host answers a ping through the broker, else 1 with the reason on one line.

The Celery app is built from the settings alone (`core.tasks`), without the tasks module, so a
check loads neither torch nor the pipeline and costs little beside a training job. The worker
answers from its main process while its pool child trains."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

from core.settings import get_settings
from core.tasks import make_celery

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Ping the worker; the exit status Docker's HEALTHCHECK reads."""
    parser = argparse.ArgumentParser(prog="python -m worker.healthcheck", description=__doc__)
    parser.add_argument(
        "--node", default=f"celery@{socket.gethostname()}", help="the worker's node name"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    args = parser.parse_args(argv)
    app = make_celery(get_settings())
    # Give up on an unreachable broker after one try instead of retrying for minutes.
    app.conf.broker_connection_timeout = args.timeout
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "max_retries": 1}
    try:
        replies = app.control.ping(destination=[args.node], timeout=args.timeout)
    except Exception as exc:  # the broker is unreachable: kombu's and redis-py's errors vary
        print(f"{args.node}: broker error: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    if not any(args.node in reply for reply in replies):
        print(f"{args.node}: no answer within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The API image's health check: `python -m service.healthcheck` exits 0 when the API on this
host answers `GET /readyz` with 200 (its database answers and every active release is
loaded), else 1 with the reason on one line. Only the settings are imported (for the port),
so a check costs a fraction of a second beside a busy server."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from core.settings import get_settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Check the API's readiness; the exit status Docker's HEALTHCHECK reads."""
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__)
    parser.add_argument("--url", help="the API's base URL (default: 127.0.0.1 at MPT_PORT)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    args = parser.parse_args(argv)
    url = (args.url or f"http://127.0.0.1:{get_settings().port}").rstrip("/") + "/readyz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

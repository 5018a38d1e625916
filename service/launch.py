"""The `mpt-service` command's entry point: `service.cli` once its dependencies import, else
one line naming the extra that brings them (a library-only install lacks the web stack)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

# Packages of this distribution: a missing one is a broken install, not a missing extra.
_OWN = frozenset({"mpt", "mptctl", "core", "service", "worker", "migrations", "bench"})
EXTRA_HINT = "pip install 'mpt-upgrades[service]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `mpt-service`; exit 1 with an install hint when a dependency is missing."""
    try:
        from service.cli import main as run
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] in _OWN:
            raise
        print(
            f"mpt-service needs the service extra, which is not installed (no module "
            f"{exc.name!r}): {EXTRA_HINT}",
            file=sys.stderr,
        )
        return 1
    return run(argv)

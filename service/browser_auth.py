"""A browser's key: kept in an HTTP-only, SameSite=Strict cookie after the dashboard's login
form, accepted for reading only, and a per-key CSRF token for the dashboard's own forms."""

from __future__ import annotations

import hashlib
import hmac

from service.auth import Principal

__all__ = ["ANONYMOUS", "COOKIE", "SAFE_METHODS", "csrf_token", "csrf_valid"]

COOKIE = "mpt_key"
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Who reads when the dashboard is public (MPT_DASHBOARD_PUBLIC): read scope, nothing more.
ANONYMOUS = Principal("anonymous", frozenset({"read"}))


def csrf_token(key: str) -> str:
    """A token only the holder of `key` can compute: forms carry it, the cookie cannot."""
    return hmac.new(key.encode(), b"mpt-dashboard-csrf", hashlib.sha256).hexdigest()


def csrf_valid(key: str, token: str) -> bool:
    return hmac.compare_digest(csrf_token(key), token)

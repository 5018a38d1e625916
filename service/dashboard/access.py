"""Who is looking at a page: the key in the login cookie, or anyone when the dashboard is
public; and the checks a form post must pass (admin key, CSRF token, same origin)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from core.models import Scope
from service.auth import Principal
from service.browser_auth import ANONYMOUS, COOKIE, csrf_token, csrf_valid
from service.deps import AppState
from service.errors import Forbidden

__all__ = ["LoginRequired", "Viewer", "admin_viewer", "safe_next", "viewer"]


class LoginRequired(Exception):
    """The page needs a key: the app answers with a redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    key: str | None  # None for the anonymous reader of a public dashboard

    @property
    def is_admin(self) -> bool:
        return self.key is not None and Scope.ADMIN in self.principal.scopes

    @property
    def csrf(self) -> str:
        return "" if self.key is None else csrf_token(self.key)


def viewer(request: Request, state: AppState) -> Viewer:
    """The logged-in key with read scope, the anonymous reader, or `LoginRequired`."""
    key = request.cookies.get(COOKIE)
    principal = state.keys.principal(key) if key else None
    if principal is not None and principal.allows(Scope.READ):
        return Viewer(principal, key)
    if state.settings.dashboard_public:
        return Viewer(ANONYMOUS, None)
    raise LoginRequired(safe_next(str(request.url.path)))


def admin_viewer(request: Request, state: AppState, token: str) -> Viewer:
    """The viewer of a form post that changes something: admin key, matching CSRF token,
    and, when the browser says where the form came from, this same host."""
    _same_origin(request)
    seen = viewer(request, state)
    if seen.key is None or not seen.is_admin:
        raise Forbidden("promoting and rolling back need a key with the admin scope")
    if not csrf_valid(seen.key, token):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
    return seen


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(f"form posted from another origin ({origin})")


def safe_next(path: str) -> str:
    """Only a dashboard path of this site: never an open redirect."""
    return path if path.startswith("/dashboard") and "//" not in path else "/dashboard"

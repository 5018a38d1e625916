"""Rendering: Jinja2 templates from the package, with the chart and wording helpers, and
errors as HTML pages rather than problem JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from service.dashboard import charts
from service.dashboard.access import LoginRequired, Viewer
from service.dashboard.words import FILTERS, rule_sentence
from service.errors import CORE_PROBLEMS, ProblemError

__all__ = ["PageRoute", "render"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(FILTERS)
templates.env.globals.update(
    sparkline=charts.sparkline,
    release_chart=charts.release_chart,
    class_bars=charts.class_bars,
    flip_heatmap=charts.flip_heatmap,
    candidates_chart=charts.candidates_chart,
    rule_sentence=rule_sentence,
)


def render(
    request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any
) -> Response:
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, **context},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _as_problem(exc: Exception) -> ProblemError:
    if isinstance(exc, ProblemError):
        return exc
    return next(make(exc) for kind, make in CORE_PROBLEMS.items() if isinstance(exc, kind))


class PageRoute(APIRoute):
    """A dashboard route: a missing login redirects to the form, an error is a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        caught: tuple[type[Exception], ...] = (ProblemError, *CORE_PROBLEMS)

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                query = urlencode({"next": exc.next_url})
                return RedirectResponse(f"/dashboard/login?{query}", status_code=303)
            except caught as exc:
                problem = _as_problem(exc)
                return render(
                    request, "error.html", None, problem.status, problem=problem, title="Error"
                )

        return page

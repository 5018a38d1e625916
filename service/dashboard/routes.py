"""The dashboard's pages and forms. Each page renders the same typed models the JSON API
returns (`service.summaries`); forms change state through `service.actions`, as the API does."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from core import releases
from core.models import FlipReportKind, Release, Scope
from service import actions
from service.browser_auth import COOKIE
from service.dashboard.access import admin_viewer, safe_next, viewer
from service.dashboard.pages import PageRoute, render
from service.deps import SessionDep, StateDep
from service.errors import NotFound, Unprocessable
from service.report_schemas import ShadowRead
from service.schemas import GoldenImages
from service.shadow_summary import latest_shadow, shadow_read
from service.summaries import deployment_overview, deployment_timeline, release_report

router = APIRouter(prefix="/dashboard", route_class=PageRoute, include_in_schema=False)

COOKIE_SECONDS = 12 * 3600
Token = Annotated[str, Form(alias="csrf")]


@router.get("")
def deployments_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    seen = viewer(request, state)
    rows = deployment_overview(session)
    return render(request, "deployments.html", seen, deployments=rows, title="Deployments")


@router.get("/login")
def login_page(request: Request, next: str = "/dashboard", error: str | None = None) -> Response:
    return render(request, "login.html", None, next=safe_next(next), error=error, title="Log in")


@router.post("/login")
def login(
    request: Request,
    state: StateDep,
    key: Annotated[str, Form(max_length=512)],
    next: Annotated[str, Form()] = "/dashboard",
) -> Response:
    principal = state.keys.principal(key.strip())
    if principal is None or not principal.allows(Scope.READ):
        reason = "unknown or revoked key" if principal is None else "the key lacks the read scope"
        return render(
            request, "login.html", None, 401, next=safe_next(next), error=reason, title="Log in"
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        max_age=COOKIE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/deployments/{name}")
def deployment_page(
    name: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    notice: str | None = None,
) -> Response:
    seen = viewer(request, state)
    deployment = releases.get_deployment(session, name)
    timeline = deployment_timeline(session, deployment)
    return render(
        request,
        "deployment.html",
        seen,
        timeline=timeline,
        notice=notice,
        title=f"{name}: releases",
    )


@router.get("/deployments/{name}/releases/{version}")
def release_page(
    name: str, version: int, request: Request, state: StateDep, session: SessionDep
) -> Response:
    seen = viewer(request, state)
    deployment = releases.get_deployment(session, name)
    release = releases.get_release(session, deployment, version)
    report = release_report(session, release)
    if report is None:
        raise NotFound(f"release {version} has no flip report: it was not made by an upgrade")
    candidate = report.reports[FlipReportKind.CANDIDATE].report
    plain = report.reports.get(FlipReportKind.NO_TREATMENT)
    return render(
        request,
        "release.html",
        seen,
        report=report,
        release=release,
        candidate=candidate,
        plain=plain.report if plain else None,
        shadow=_shadow(session, release),
        title=f"{name} v{version}: flip report",
    )


@router.get("/deployments/{name}/compare")
def compare_page(
    name: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    seen = viewer(request, state)
    deployment = releases.get_deployment(session, name)
    timeline = deployment_timeline(session, deployment)
    versions = [r.version for r in timeline.releases]
    a = a or (versions[-2] if len(versions) > 1 else versions[0] if versions else None)
    b = b or (versions[-1] if versions else None)
    sides = []
    for version in (a, b):
        if version is None:
            continue
        release = releases.get_release(session, deployment, version)
        summary = next(r for r in timeline.releases if r.version == version)
        sides.append((release, summary, release_report(session, release)))
    return render(
        request,
        "compare.html",
        seen,
        timeline=timeline,
        versions=versions,
        a=a,
        b=b,
        sides=sides,
        title=f"{name}: compare releases",
    )


@router.post("/deployments/{name}/releases/{version}/promote")
def promote_form(
    name: str,
    version: int,
    request: Request,
    state: StateDep,
    session: SessionDep,
    csrf: Token = "",
    force: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    seen = admin_viewer(request, state, csrf)
    deployment = releases.get_deployment(session, name)
    release = releases.get_release(session, deployment, version)
    actions.promote(
        state, session, release, seen.principal.name, force=force, reason=reason or None
    )
    return _back(name, f"v{version} is now active")


@router.post("/deployments/{name}/rollback")
def rollback_form(
    name: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    csrf: Token = "",
    to_version: Annotated[str, Form()] = "",
) -> Response:
    seen = admin_viewer(request, state, csrf)
    deployment = releases.get_deployment(session, name)
    target = _version(to_version)
    release = actions.rollback(state, session, deployment, seen.principal.name, target)
    return _back(name, f"rolled back: v{release.version} is active")


@router.post("/deployments/{name}/golden")
def golden_form(
    name: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    csrf: Token = "",
    dataset_id: Annotated[str, Form(max_length=32)] = "",
    index: Annotated[list[int] | None, Form()] = None,
) -> Response:
    seen = admin_viewer(request, state, csrf)
    try:
        body = GoldenImages(dataset_id=dataset_id, indices=index or [])
    except ValidationError as exc:
        raise Unprocessable("check from 1 to 500 images to add to the must-not-flip set") from exc
    deployment = releases.get_deployment(session, name)
    record = actions.add_golden_images(state, session, deployment, body, seen.principal.name)
    total = sum(record.counts.get("test", {}).values())
    added = len(body.indices)
    query = urlencode({"notice": f"{added} images added: the must-not-flip set holds {total}"})
    return RedirectResponse(f"/dashboard/deployments/{name}?{query}", status_code=303)


def _shadow(session: SessionDep, release: Release) -> ShadowRead | None:
    found = latest_shadow(session, release)
    return None if found is None else shadow_read(session, found)


def _version(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise Unprocessable(f"to_version must be a release number, got {text!r}")
    return int(text)


def _back(name: str, notice: str) -> Response:
    query = urlencode({"notice": notice})
    return RedirectResponse(f"/dashboard/deployments/{name}?{query}", status_code=303)

"""The dashboard: server-rendered pages over the same typed models as the JSON API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.dashboard.routes import router

__all__ = ["install_dashboard"]


def install_dashboard(app: FastAPI) -> None:
    """Mount the pages under /dashboard and their stylesheet and script."""
    app.include_router(router)
    static = Path(__file__).parent / "static"
    app.mount("/dashboard/static", StaticFiles(directory=static), name="dashboard-static")

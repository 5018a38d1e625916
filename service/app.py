"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from core import db
from core.settings import Settings, get_settings
from core.storage import LocalArtifactStore
from core.tasks import make_celery
from service.auth import KeyCache, ensure_bootstrap_key
from service.background import EmbeddedWorker, JobJanitor
from service.bodies import BodyLimit
from service.deps import AppState
from service.errors import install_handlers
from service.logs import configure_logging, request_context
from service.metrics import ServiceMetrics
from service.routes import (
    audit,
    datasets,
    deployments,
    health,
    keys,
    predict,
    releases,
    upgrades,
)
from service.serving.registry import ServingRegistry

__all__ = ["create_app"]


def _state(settings: Settings, run_migrations: bool) -> AppState:
    if run_migrations:
        db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    sessions = db.make_session_factory(engine)
    store = LocalArtifactStore(settings.artifact_dir)
    (store.root / "staging").mkdir(parents=True, exist_ok=True)
    if settings.admin_token is not None:
        with sessions() as session:
            ensure_bootstrap_key(session, settings.admin_token.get_secret_value())
            session.commit()
    metrics = ServiceMetrics()
    registry = ServingRegistry(
        sessions,
        store,
        batch_max_size=settings.batch_max_size,
        batch_max_wait=settings.batch_max_wait_ms / 1000,
        poll_seconds=settings.release_poll_seconds,
        on_swap=metrics.set_active,
    )
    return AppState(
        engine,
        settings,
        sessions,
        store,
        registry,
        metrics,
        make_celery(settings),
        KeyCache(sessions),
    )


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """The service: routes, error handlers, logging; models load in the lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        state = _state(settings, run_migrations)
        app.state.mpt = state
        await state.registry.sync()
        state.registry.start()
        janitor = JobJanitor(settings, state.sessions, state.celery)
        janitor.start()
        worker = EmbeddedWorker(settings) if settings.runs_embedded_worker else None
        if worker is not None:
            worker.start()
            state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await janitor.stop()
            await state.registry.stop()
            state.engine.dispose()

    app = FastAPI(
        title="mpt-upgrades",
        version="0.1.0",
        lifespan=lifespan,
        description="Flip-gated classifier upgrades with Margin Preserving Training.",
    )
    install_handlers(app)

    def count(request: Request, response: Response, seconds: float) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.mpt.metrics.http_requests.labels(
            request.method, path, str(response.status_code)
        ).inc()

    app.middleware("http")(request_context(count))
    app.add_middleware(
        BodyLimit,
        upload_limit=settings.max_upload_bytes,
        other_limit=settings.max_predict_bytes,
    )
    for module in (health, deployments, releases, datasets, predict, upgrades, keys, audit):
        app.include_router(module.router)
    return app

"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Scope

from core import db
from core.settings import Settings, get_settings
from core.storage import open_store
from core.tasks import make_celery
from service.auth import KeyCache, ensure_bootstrap_key
from service.background import EmbeddedWorker, JobJanitor
from service.bodies import BodyLimit
from service.dashboard import install_dashboard
from service.deps import AppState
from service.errors import install_handlers
from service.logs import RequestContext, configure_logging
from service.metrics import ServiceMetrics
from service.openapi import document_bearer_keys
from service.routes import (
    audit,
    datasets,
    deployments,
    health,
    inference,
    keys,
    lineage,
    predict,
    releases,
    shadows,
    upgrades,
)
from service.serving.background import Periodic, periodic
from service.serving.holder import serving_device
from service.serving.registry import BatchLimits, ServingRegistry, load_served_model
from service.serving.shadow import ShadowSet
from service.thumbnails import SplitCache

__all__ = ["create_app", "create_replica"]

log = logging.getLogger("service.serving")


def _state(settings: Settings, run_migrations: bool) -> AppState:
    if run_migrations:
        db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    sessions = db.make_session_factory(engine)
    store = open_store(settings)
    (store.root / "staging").mkdir(parents=True, exist_ok=True)
    if settings.admin_token is not None:
        with sessions() as session:
            ensure_bootstrap_key(session, settings.admin_token.get_secret_value())
            session.commit()
    metrics = ServiceMetrics()
    limits = BatchLimits(
        settings.batch_max_size, settings.batch_max_wait_ms / 1000, settings.batch_max_queue
    )
    registry = ServingRegistry(
        sessions,
        store,
        limits=limits,
        poll_seconds=settings.release_poll_seconds,
        device=serving_device(settings.serving_device),
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
        KeyCache(sessions, recheck=settings.key_recheck_seconds),
        SplitCache(),
        ShadowSet(sessions, store, load_served_model, queue_size=settings.shadow_queue_size),
    )


def _shadow_loop(state: AppState) -> Periodic:
    """Follow the shadows every poll interval; serve a release a shadow promoted at once."""

    async def tick() -> None:
        if await asyncio.to_thread(state.shadows.sync):
            await state.registry.sync()

    return periodic(state.settings.release_poll_seconds, tick, "following the shadows", log)


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
        shadowing = _shadow_loop(state)
        shadowing.start()
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
            await shadowing.stop()
            await asyncio.to_thread(state.shadows.stop)
            await state.registry.stop()
            state.engine.dispose()

    app = FastAPI(
        title="mpt-upgrades",
        version="0.1.0",
        lifespan=lifespan,
        description="Flip-gated classifier upgrades with Margin Preserving Training.",
    )
    install_handlers(app)
    document_bearer_keys(app)

    def count(scope: Scope, status: int, seconds: float) -> None:
        path = getattr(scope.get("route"), "path", "unmatched")
        app.state.mpt.metrics.http_requests.labels(scope["method"], path, str(status)).inc()

    app.add_middleware(
        BodyLimit,
        upload_limit=settings.max_upload_bytes,
        other_limit=settings.max_predict_bytes,
    )
    app.add_middleware(RequestContext, on_done=count)  # outermost: it sees every answer
    for module in (
        health,
        deployments,
        releases,
        shadows,
        lineage,
        datasets,
        predict,
        inference,
        upgrades,
        keys,
        audit,
    ):
        app.include_router(module.router)
    app.include_router(deployments.overview_router)
    install_dashboard(app)
    return app


def create_replica() -> FastAPI:
    """One of `mpt-service serve --workers N`'s processes: settings from the environment, the
    database already migrated by the parent."""
    return create_app(run_migrations=False)

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.exc import DBAPIError

from service.deps import StateDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def get_health() -> Health:
    """Liveness: the process answers. No key needed."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,  # `worker` only where the API runs one
    responses={503: {"model": Health}},
)
def get_ready(state: StateDep, response: Response) -> Health:
    """Readiness: the database answers, every deployment with an active release has it
    loaded, and the embedded worker (if any) runs. No key needed."""
    try:
        loaded = state.registry.readiness()
    except DBAPIError:
        response.status_code = 503
        return Health(status="database unreachable")
    worker = None if state.worker is None else state.worker.status
    ready = all(loaded.values()) and worker in (None, "running")
    if not ready:
        response.status_code = 503
    status = "ready" if ready else ("loading" if worker in (None, "running") else "worker down")
    return Health(status=status, deployments=loaded, worker=worker)


@router.get("/metrics", response_class=Response)
def get_metrics(state: StateDep) -> Response:
    """Prometheus metrics in the text exposition format. No key needed."""
    for name, batcher in state.registry.batchers().items():
        state.metrics.pending.labels(name).set(batcher.pending)
        state.metrics.arriving.labels(name).set(batcher.arriving)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

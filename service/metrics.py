"""Prometheus metrics of one app, in a registry of its own (several apps may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]


class ServiceMetrics:
    """Requests, latencies and batch sizes by deployment and release; active releases."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "mpt_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "mpt_predictions",
            "Inputs answered by /predict",
            ["deployment", "release"],
            registry=self.registry,
        )
        self.predict_latency = Histogram(
            "mpt_predict_latency_seconds",
            "Time from request to answer on /predict",
            ["deployment", "release"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.forward_seconds = Counter(
            "mpt_predict_forward_seconds",
            "Seconds of forward passes (copies included), each request counting its share",
            ["deployment", "release"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "mpt_predict_batch_size",
            "Inputs in the forward pass a request shared",
            ["deployment", "release"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.pending = Gauge(
            "mpt_predict_pending_inputs",
            "Inputs in a deployment's micro-batcher, waiting or in a forward pass",
            ["deployment"],
            registry=self.registry,
        )
        self.arriving = Gauge(
            "mpt_predict_arriving_requests",
            "Prediction requests reading their inputs, on their way to the micro-batcher",
            ["deployment"],
            registry=self.registry,
        )
        self.active_release = Gauge(
            "mpt_active_release_info",
            "The release being served (1)",
            ["deployment", "release"],
            registry=self.registry,
        )
        self._active: dict[str, str] = {}

    def set_active(self, deployment: str, version: int) -> None:
        """Mark `version` as the one `deployment` serves, dropping the previous label set."""
        previous = self._active.get(deployment)
        if previous is not None and previous != str(version):
            self.active_release.remove(deployment, previous)
        self.active_release.labels(deployment, str(version)).set(1)
        self._active[deployment] = str(version)

    def render(self) -> bytes:
        return generate_latest(self.registry)

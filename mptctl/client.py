"""A small typed client of the mpt-upgrades REST API, on httpx.

    with Client("http://127.0.0.1:8000", key) as api:
        dataset = api.upload_dataset(Path("glyphs.npz"))
        job = api.submit_upgrade("default", UpgradeRequest(dataset.id, epochs=10))
        job = api.wait(job.id)
        report = api.report("default", job.release_version)

Every failure is an `ApiError`: an answer with status >= 400 (its problem details), or no
answer at all (`status is None`).
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

import httpx

from mptctl.errors import ApiError
from mptctl.reports import ReleaseReport
from mptctl.resources import Dataset, Deployment, Job, PredictResult, Release

__all__ = ["Client", "UpgradeRequest", "UploadProgress"]

UploadProgress = Callable[[int, int], None]
"""Called as bytes of an upload go out: (bytes sent so far, size of the file)."""


@dataclass(frozen=True)
class UpgradeRequest:
    """The body of `POST /v1/deployments/{name}/upgrades`; fields left `None` take the
    service's defaults (method `mpt_kl`, the default bias sweep, ...)."""

    dataset_id: str
    method: str | None = None
    arch: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    bias: float | list[float] | None = None
    relative_bias: float | list[float] | None = None
    seed: int | None = None
    gate: dict[str, float | str] | None = None
    auto_promote: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class _CountingReader:
    """A binary file that reports how much of it has been read."""

    def __init__(self, file: IO[bytes], size: int, progress: UploadProgress) -> None:
        self.file, self.size, self.progress = file, size, progress
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.sent += len(chunk)
        self.progress(self.sent, self.size)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.file.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self.file.tell()

    def fileno(self) -> int:  # lets httpx size the body without reading it
        return self.file.fileno()


class Client:
    """The API at `base_url`, called with the API key `key` (`Authorization: Bearer`)."""

    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer of one request; `ApiError` for any failure."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError.unreachable_at(self.base_url, exc) from exc
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from exc

    # --- health --------------------------------------------------------------------------------

    def is_up(self) -> bool:
        """Whether the service answers its liveness check."""
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    # --- deployments and releases --------------------------------------------------------------

    def deployments(self) -> list[Deployment]:
        return [Deployment.from_json(d) for d in self._call("GET", "/v1/deployments")["data"]]

    def deployment(self, name: str) -> Deployment:
        return Deployment.from_json(self._call("GET", f"/v1/deployments/{name}"))

    def create_deployment(
        self, name: str, gate: dict[str, float | str] | None = None
    ) -> Deployment:
        body = {"name": name, "gate": gate or {}}
        return Deployment.from_json(self._call("POST", "/v1/deployments", json=body))

    def releases(self, name: str) -> list[Release]:
        """The deployment's releases, newest first."""
        data = self._call("GET", f"/v1/deployments/{name}/releases")["data"]
        return [Release.from_json(r) for r in data]

    def release(self, name: str, version: int) -> Release:
        return Release.from_json(self._call("GET", f"/v1/deployments/{name}/releases/{version}"))

    def register_release(self, name: str, package: Path, *, activate: bool = False) -> Release:
        """Register a model package (`.zip` or `.pt2`); `activate` for the first release."""
        with package.open("rb") as file:
            answer = self._call(
                "POST",
                f"/v1/deployments/{name}/releases",
                files={"file": (package.name, file, "application/octet-stream")},
                data={"activate": "true" if activate else "false"},
            )
        return Release.from_json(answer)

    def report(self, name: str, version: int) -> ReleaseReport:
        """The release's flip report against the release it was trained to replace."""
        path = f"/v1/deployments/{name}/releases/{version}/report"
        return cast(ReleaseReport, self._call("GET", path))

    def promote(
        self, name: str, version: int, *, force: bool = False, reason: str | None = None
    ) -> Release:
        """Make a release active; `force` with a `reason` overrides a failed gate (admin)."""
        body: dict[str, Any] = {"force": force}
        if reason is not None:
            body["reason"] = reason
        path = f"/v1/deployments/{name}/releases/{version}/promote"
        return Release.from_json(self._call("POST", path, json=body))

    def rollback(self, name: str, to_version: int | None = None) -> Release:
        """Back to the previously active release, or to `to_version`; the release now active."""
        body = {} if to_version is None else {"to_version": to_version}
        return Release.from_json(self._call("POST", f"/v1/deployments/{name}/rollback", json=body))

    # --- datasets ------------------------------------------------------------------------------

    def upload_dataset(
        self,
        path: Path,
        *,
        name: str | None = None,
        deployment: str | None = None,
        resize: str | None = None,
        progress: UploadProgress | None = None,
    ) -> Dataset:
        """Upload an `.npz` or a `.zip`/`.tar.gz` image tree; `deployment` checks that it
        holds every label of that deployment's active release; `resize` is "HxW"."""
        form = {"name": name, "deployment": deployment, "resize": resize}
        size = path.stat().st_size
        with path.open("rb") as file:
            body: IO[bytes] | _CountingReader = file
            if progress is not None:
                body = _CountingReader(file, size, progress)
            answer = self._call(
                "POST",
                "/v1/datasets",
                files={"file": (path.name, body, "application/octet-stream")},
                data={k: v for k, v in form.items() if v is not None},
            )
        return Dataset.from_json(answer)

    def dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._call("GET", f"/v1/datasets/{dataset_id}"))

    # --- upgrades ------------------------------------------------------------------------------

    def submit_upgrade(
        self, name: str, request: UpgradeRequest, *, idempotency_key: str | None = None
    ) -> Job:
        """Queue an upgrade of the deployment's active release; the same `idempotency_key`
        gives back the same job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        path = f"/v1/deployments/{name}/upgrades"
        return Job.from_json(self._call("POST", path, json=request.to_json(), headers=headers))

    def upgrade(self, job_id: str) -> Job:
        return Job.from_json(self._call("GET", f"/v1/upgrades/{job_id}"))

    def upgrades(self, name: str, *, limit: int = 20) -> list[Job]:
        """The deployment's upgrade jobs, newest first."""
        path = f"/v1/deployments/{name}/upgrades"
        return [Job.from_json(j) for j in self._call("GET", path, params={"limit": limit})["data"]]

    def cancel_upgrade(self, job_id: str) -> Job:
        return Job.from_json(self._call("POST", f"/v1/upgrades/{job_id}/cancel"))

    def wait(
        self,
        job_id: str,
        *,
        on_update: Callable[[Job], None] | None = None,
        interval: float = 0.5,
    ) -> Job:
        """Poll the job every `interval` seconds until it has finished; `on_update` sees
        every state read, the last one included."""
        while True:
            job = self.upgrade(job_id)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            time.sleep(interval)

    # --- inference -----------------------------------------------------------------------------

    def predict(self, images: Sequence[Path], *, deployment: str | None = None) -> PredictResult:
        """Labels and scores for image files, from `deployment`'s active release (the
        service's default deployment when `None`)."""
        files = [
            ("files", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "image/png"))
            for p in images
        ]
        path = "/predict" if deployment is None else f"/v1/deployments/{deployment}/predict"
        return PredictResult.from_json(self._call("POST", path, files=files))

"""Dataset uploads: validated once, stored decoded as `.npz` so training never re-parses."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from core import audit, releases
from core.models import DatasetRecord
from core.settings import Settings
from core.storage import StagedUpload, storage_errors
from mpt.data import ImageDataset, save_npz
from service.deps import AdminKey, AppState, DatasetDep, ReadKey, SessionDep, StateDep, scope_doc
from service.errors import UPLOAD_PROBLEMS, NotFound, Unprocessable, problem_responses
from service.ingest.archives import ArchiveLimits
from service.ingest.datasets import IngestOptions, read_dataset
from service.schemas import DatasetRead
from service.thumbnails import ThumbnailError
from service.uploads import form_text, multipart_doc, read_form, stage_upload

router = APIRouter(
    prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(*UPLOAD_PROBLEMS)
)


def _parse_size(resize: str | None, max_pixels: int) -> tuple[int, int] | None:
    if not resize:
        return None
    match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", resize)
    if match is None or 0 in (int(match[1]), int(match[2])):
        raise Unprocessable(
            f"resize must look like 32x32 (height x width), got {resize!r}",
            errors=[{"loc": ["body", "resize"], "msg": "expected HxW"}],
        )
    height, width = int(match[1]), int(match[2])
    if height * width > max_pixels:
        raise Unprocessable(
            f"resize {resize} is {height * width} pixels per image, over the limit of {max_pixels}",
            errors=[{"loc": ["body", "resize"], "msg": "too many pixels"}],
        )
    return height, width


def _check_covers(session: Session, dataset: ImageDataset, deployment: str) -> None:
    active = releases.get_deployment(session, deployment).active_release
    if active is None:
        return
    missing = [label for label in active.labels if label not in set(dataset.classes)]
    if missing:
        raise Unprocessable(
            f"the dataset lacks {len(missing)} class(es) of release {active.version}: {missing}",
            errors=[{"loc": ["body", "file"], "msg": "missing class", "class": m} for m in missing],
        )


_UPLOAD_DOC = multipart_doc(
    {
        "file": {
            "type": "string",
            "format": "binary",
            "description": ".zip/.tar.gz image tree or .npz",
        },
        "name": {"type": "string"},
        "resize": {"type": "string", "example": "32x32"},
        "deployment": {"type": "string"},
    },
    "admin",
)


def _options(settings: Settings, resize: str | None) -> IngestOptions:
    limits = ArchiveLimits(
        max_members=settings.max_archive_members,
        max_member_bytes=min(settings.max_dataset_bytes, ArchiveLimits.max_member_bytes),
        max_total_bytes=settings.max_dataset_bytes,
    )
    return IngestOptions(
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.max_dataset_bytes,
        size=_parse_size(resize, settings.max_image_pixels),
        limits=limits,
    )


@dataclass(frozen=True)
class _Upload:
    """A staged dataset upload and what its form asked for."""

    staged: StagedUpload
    title: str
    deployment: str | None
    options: IngestOptions


def _store_decoded(state: AppState, dataset: ImageDataset) -> str:
    with storage_errors(), tempfile.TemporaryDirectory(dir=state.store.root) as folder:
        path = save_npz(dataset, Path(folder) / "dataset.npz")
        return state.store.put_file(path)


def _record(state: AppState, session: Session, upload: _Upload, actor: str) -> DatasetRead:
    """Read, check and store the upload, then record it (in a worker thread)."""
    with upload.staged as staged:
        staged.close()
        dataset, kind = read_dataset(staged.temp_path, upload.title, upload.options)
        if upload.deployment:
            _check_covers(session, dataset, upload.deployment)
        record = DatasetRecord(
            name=upload.title,
            sha256=staged.sha256,
            artifact_sha256=_store_decoded(state, dataset),
            classes=dataset.classes,
            counts=dataset.counts(),
            image_shape=list(dataset.image_shape),
            format=kind,
            size_bytes=staged.size,
        )
    session.add(record)
    audit.record(session, actor, "upload_dataset", detail={"dataset": record.name})
    session.commit()
    return DatasetRead.model_validate(record)


@router.post("", response_model=DatasetRead, status_code=201, openapi_extra=_UPLOAD_DOC)
async def upload_dataset(
    request: Request, state: StateDep, session: SessionDep, key: AdminKey
) -> DatasetRead:
    """Upload a `.zip`/`.tar.gz` image tree or an `.npz` (multipart field `file`); optional
    `name`, `resize=HxW`, and `deployment` to check it covers that deployment's active
    labels. Scope: admin."""
    limit = state.settings.max_upload_bytes
    form = await read_form(request, limit)
    try:
        options = _options(state.settings, form_text(form, "resize"))
        deployment = form_text(form, "deployment")
        file = form.get("file")
        title = form_text(form, "name") or getattr(file, "filename", None) or "dataset"
        staged = await stage_upload(file, state.store, limit)
    finally:
        await form.close()
    upload = _Upload(staged, title, deployment, options)
    return await anyio.to_thread.run_sync(_record, state, session, upload, key.name)


@router.get("/{dataset_id}", response_model=DatasetRead, openapi_extra=scope_doc("read"))
def get_dataset(key: ReadKey, record: DatasetDep) -> DatasetRead:
    """A dataset's classes, counts per split and checksum. Scope: read."""
    return DatasetRead.model_validate(record)


@router.get(
    "/{dataset_id}/images/{split}/{index}",
    response_class=Response,
    openapi_extra={
        **scope_doc("read"),
        "responses": {"200": {"content": {"image/png": {"schema": {"type": "string"}}}}},
    },
)
def get_dataset_image(
    split: str,
    index: Annotated[int, PathParam(ge=0)],
    state: StateDep,
    key: ReadKey,
    record: DatasetDep,
) -> Response:
    """One image of a dataset as PNG, by split and position (flip reports list positions in
    the test split). Scope: read."""
    try:
        png = state.thumbnails.png(
            state.store.path(record.artifact_sha256), record.artifact_sha256, split, index
        )
    except ThumbnailError as exc:
        raise NotFound(str(exc)) from exc
    return Response(
        png, media_type="image/png", headers={"cache-control": "private, max-age=86400, immutable"}
    )

"""Dataset uploads: validated once, stored decoded as `.npz` so training never re-parses."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request

from core import releases
from core.models import DatasetRecord
from mpt.data import ImageDataset, save_npz
from service.deps import AdminKey, ReadKey, SessionDep, StateDep, scope_doc
from service.errors import NotFound, Unprocessable
from service.ingest.archives import ArchiveLimits
from service.ingest.datasets import DatasetUploadError, IngestOptions, read_dataset
from service.schemas import DatasetRead
from service.uploads import form_text, multipart_doc, read_form, stage_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _parse_size(resize: str | None) -> tuple[int, int] | None:
    if not resize:
        return None
    match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", resize)
    if match is None or 0 in (int(match[1]), int(match[2])):
        raise Unprocessable(
            f"resize must look like 32x32 (height x width), got {resize!r}",
            errors=[{"loc": ["body", "resize"], "msg": "expected HxW"}],
        )
    return int(match[1]), int(match[2])


def _check_covers(session: SessionDep, dataset: ImageDataset, deployment: str) -> None:
    try:
        active = releases.get_deployment(session, deployment).active_release
    except releases.NotFoundError as exc:
        raise NotFound(str(exc)) from exc
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


def _ingest(
    state: StateDep, path: Path, title: str, options: IngestOptions
) -> tuple[ImageDataset, str]:
    try:
        return read_dataset(path, title, options)
    except DatasetUploadError as exc:
        raise Unprocessable(str(exc), errors=exc.errors) from exc


@router.post("", response_model=DatasetRead, status_code=201, openapi_extra=_UPLOAD_DOC)
async def upload_dataset(
    request: Request, state: StateDep, session: SessionDep, key: AdminKey
) -> DatasetRead:
    """Upload a `.zip`/`.tar.gz` image tree or an `.npz` (multipart field `file`); optional
    `name`, `resize=HxW`, and `deployment` to check it covers that deployment's active
    labels. Scope: admin."""
    form = await read_form(request, state.settings.max_upload_bytes)
    try:
        size = _parse_size(form_text(form, "resize"))
        deployment = form_text(form, "deployment")
        upload = form.get("file")
        filename = getattr(upload, "filename", None)
        title = form_text(form, "name") or filename or "dataset"
        staged = await stage_upload(upload, state.store, state.settings.max_upload_bytes)
    finally:
        await form.close()
    options = IngestOptions(
        max_pixels=state.settings.max_image_pixels,
        size=size,
        limits=ArchiveLimits(max_total_bytes=4 * state.settings.max_upload_bytes),
    )
    with staged:
        staged.close()
        dataset, kind = await asyncio.to_thread(_ingest, state, staged.temp_path, title, options)
        if deployment:
            _check_covers(session, dataset, deployment)
        decoded_sha = await asyncio.to_thread(_store_decoded, state, dataset)
        record = DatasetRecord(
            name=title,
            sha256=staged.sha256,
            artifact_sha256=decoded_sha,
            classes=dataset.classes,
            counts=dataset.counts(),
            image_shape=list(dataset.image_shape),
            format=kind,
            size_bytes=staged.size,
        )
    session.add(record)
    releases.audit(session, key.name, "upload_dataset", detail={"dataset": record.name})
    session.commit()
    return DatasetRead.model_validate(record)


def _store_decoded(state: StateDep, dataset: ImageDataset) -> str:
    with tempfile.TemporaryDirectory(dir=state.store.root) as folder:
        path = save_npz(dataset, Path(folder) / "dataset.npz")
        return state.store.put_file(path)


@router.get("/{dataset_id}", response_model=DatasetRead, openapi_extra=scope_doc("read"))
def get_dataset(dataset_id: str, session: SessionDep, key: ReadKey) -> DatasetRead:
    """A dataset's classes, counts per split and checksum. Scope: read."""
    record = session.get(DatasetRecord, dataset_id)
    if record is None:
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return DatasetRead.model_validate(record)

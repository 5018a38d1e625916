"""Dataset uploads: validated once, stored decoded as `.npz` so training never re-parses."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from core import releases
from core.models import DatasetRecord
from mpt.data import ImageDataset, save_npz
from service.deps import AdminKey, ReadKey, SessionDep, StateDep, scope_doc
from service.errors import NotFound, Unprocessable
from service.ingest.archives import ArchiveLimits
from service.ingest.datasets import DatasetUploadError, IngestOptions, read_dataset
from service.schemas import DatasetRead
from service.uploads import check_content_length, require_multipart, stage_upload

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


@router.post("", response_model=DatasetRead, status_code=201, openapi_extra=scope_doc("admin"))
async def upload_dataset(
    request: Request,
    state: StateDep,
    session: SessionDep,
    key: AdminKey,
    file: Annotated[UploadFile | None, File()] = None,
    name: Annotated[str | None, Form(max_length=255)] = None,
    resize: Annotated[str | None, Form()] = None,
    deployment: Annotated[str | None, Form()] = None,
) -> DatasetRead:
    """Upload a `.zip`/`.tar.gz` image tree or an `.npz` (multipart field `file`); optional
    `resize=HxW`, and `deployment` to check it covers that deployment's active labels.
    Scope: admin."""
    require_multipart(request)
    check_content_length(request, state.settings.max_upload_bytes)
    staged = await stage_upload(file, state.store, state.settings.max_upload_bytes)
    title = name or (file.filename if file and file.filename else "dataset")
    options = IngestOptions(
        max_pixels=state.settings.max_image_pixels,
        size=_parse_size(resize),
        limits=ArchiveLimits(max_total_bytes=4 * state.settings.max_upload_bytes),
    )
    with staged:
        staged.close()
        try:
            dataset, kind = read_dataset(staged.temp_path, title, options)
        except DatasetUploadError as exc:
            raise Unprocessable(str(exc), errors=exc.errors) from exc
        if deployment:
            _check_covers(session, dataset, deployment)
        decoded_sha = _store_decoded(state, dataset)
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

"""API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from service import auth
from service.deps import AdminKey, SessionDep, StateDep, scope_doc
from service.errors import API_PROBLEMS, problem_responses
from service.schemas import KeyCreate, KeyCreated, KeyRead, ListOf

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=problem_responses(*API_PROBLEMS))


@router.post("", response_model=KeyCreated, status_code=201, openapi_extra=scope_doc("admin"))
def create_key(body: KeyCreate, session: SessionDep, key: AdminKey) -> KeyCreated:
    """Create a key with `scopes`; the response holds it, nothing else ever will. Scope: admin."""
    secret = auth.create_key(session, body.name, body.scopes, actor=key.name)
    session.commit()
    row = KeyRead.model_validate(auth.get_key(session, body.name))
    return KeyCreated(**row.model_dump(), key=secret)


@router.get("", response_model=ListOf[KeyRead], openapi_extra=scope_doc("admin"))
def list_keys(session: SessionDep, key: AdminKey) -> ListOf[KeyRead]:
    """Every key, revoked ones included, without the keys themselves. Scope: admin."""
    rows = [KeyRead.model_validate(k) for k in auth.list_keys(session)]
    return ListOf[KeyRead](data=rows, count=len(rows))


@router.post("/{key_name}/revoke", response_model=KeyRead, openapi_extra=scope_doc("admin"))
def revoke_key(key_name: str, session: SessionDep, key: AdminKey, state: StateDep) -> KeyRead:
    """Revoke a key: this process refuses it from its next request, the others within
    MPT_KEY_RECHECK_SECONDS. Scope: admin."""
    row = auth.revoke_key(session, key_name, actor=key.name)
    session.commit()
    state.keys.forget(row.id)
    return KeyRead.model_validate(row)

"""Bearer API keys: created once, stored only as hashes, checked against scopes in constant
time, listed and revoked. Keys never reach a log: only their names do."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.models import ApiKey, Scope, utc_now
from core.releases import ConflictError, NotFoundError

__all__ = [
    "KEY_PREFIX",
    "KeyCache",
    "Principal",
    "authenticate",
    "create_key",
    "ensure_bootstrap_key",
    "get_key",
    "list_keys",
    "revoke_key",
]

KEY_PREFIX = "mpt_"
BOOTSTRAP_NAME = "bootstrap-admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and scopes (`admin` implies every scope)."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


def _hash(key: str) -> str:
    # Keys are 32 random bytes: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    valid = {s.value for s in Scope}
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in valid]
    if unknown or not chosen:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(valid)}, got {chosen}")
    return chosen


def get_key(session: Session, name: str) -> ApiKey:
    """The key named `name`; NotFoundError when there is none."""
    key = session.scalars(sa.select(ApiKey).where(ApiKey.name == name)).one_or_none()
    if key is None:
        raise NotFoundError(f"no API key is named {name!r}")
    return key


def create_key(session: Session, name: str, scopes: Iterable[str], actor: str = "system") -> str:
    """Store a new key named `name` and return it; only its hash is kept."""
    if session.scalars(sa.select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise ConflictError(f"an API key named {name!r} already exists")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    chosen = _check_scopes(scopes)
    session.add(ApiKey(name=name, prefix=key[:8], key_hash=_hash(key), scopes=chosen))
    audit.record(session, actor, "create_key", detail={"key": name, "scopes": chosen})
    return key


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, name: str, actor: str) -> ApiKey:
    """Revoke the key named `name`; every API process refuses it from its next request."""
    key = get_key(session, name)
    if key.revoked_at is not None:
        raise ConflictError(f"the API key {name!r} is already revoked")
    key.revoked_at = utc_now()
    audit.record(session, actor, "revoke_key", detail={"key": name})
    return key


def ensure_bootstrap_key(session: Session, token: str) -> None:
    """Make `token` (from MPT_ADMIN_TOKEN) a valid admin key, replacing an older one. A
    revoked token stays revoked: only a new token brings the bootstrap key back."""
    existing = session.scalars(sa.select(ApiKey).where(ApiKey.name == BOOTSTRAP_NAME)).first()
    digest = _hash(token)
    if existing is None:
        session.add(
            ApiKey(
                name=BOOTSTRAP_NAME, prefix=token[:8], key_hash=digest, scopes=[Scope.ADMIN.value]
            )
        )
    elif existing.key_hash != digest:
        existing.prefix, existing.key_hash, existing.revoked_at = token[:8], digest, None


def _lookup(session: Session, key: str) -> tuple[int, Principal] | None:
    digest = _hash(key)
    candidates = session.scalars(
        sa.select(ApiKey).where(ApiKey.prefix == key[:8], ApiKey.revoked_at.is_(None))
    )
    for row in candidates:
        if hmac.compare_digest(row.key_hash, digest):
            row.last_used_at = utc_now()
            return row.id, Principal(row.name, frozenset(row.scopes))
    return None


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal behind `key`, or None for an unknown or revoked key."""
    found = _lookup(session, key)
    return None if found is None else found[1]


def _revoked(session: Session, key_id: int) -> bool:
    revoked_at = session.scalars(sa.select(ApiKey.revoked_at).where(ApiKey.id == key_id)).first()
    return revoked_at is not None


@dataclass
class _Entry:
    key_id: int
    principal: Principal
    expires: float
    checked: float  # when the database last said the key was not revoked


class KeyCache:
    """Keys proven within `ttl` seconds are not hashed against the table again, and a key
    the database confirmed unrevoked within `recheck` seconds is trusted without asking it
    again: `fresh` answers those from memory, on the event loop. Past `recheck`, `principal`
    asks again with one primary-key read, so a revocation stops the key in every API process
    within `recheck` seconds (at once in the process that revoked it: `forget`; and at once
    everywhere with `recheck=0`). While the database is unreachable a remembered key keeps
    working until its entry expires (no revocation can be written meanwhile), so `/predict`
    goes on answering."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        ttl: float = 300.0,
        recheck: float = 1.0,
        max_entries: int = 10_000,
    ) -> None:
        self.sessions, self.ttl, self.recheck = sessions, ttl, recheck
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def fresh(self, key: str) -> Principal | None:
        """The key's principal when the database confirmed it within `recheck` seconds; None
        when `principal` must be asked (in a worker thread: it may read the database)."""
        hit = self._entries.get(_hash(key))
        if hit is not None and time.monotonic() - hit.checked < self.recheck:
            return hit.principal
        return None

    def forget(self, key_id: int) -> None:
        """Drop the entries of the key `key_id` (revoked here): its next request is refused."""
        for digest in [d for d, e in self._entries.items() if e.key_id == key_id]:
            self._entries.pop(digest, None)

    def principal(self, key: str) -> Principal | None:
        digest, now = _hash(key), time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit.expires > now:
            return self._recheck(digest, hit)
        with self.sessions() as session:
            found = _lookup(session, key)
            session.commit()
        if found is None:
            self._entries.pop(digest, None)
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = _Entry(found[0], found[1], now + self.ttl, now)
        return found[1]

    def _recheck(self, digest: str, hit: _Entry) -> Principal | None:
        try:
            with self.sessions() as session:
                revoked = _revoked(session, hit.key_id)
        except DBAPIError:
            return hit.principal
        if revoked:
            self._entries.pop(digest, None)
            return None
        hit.checked = time.monotonic()
        return hit.principal

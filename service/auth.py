"""Bearer API keys: created once, stored only as hashes, checked against scopes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.models import ApiKey, Scope, utc_now

__all__ = [
    "KEY_PREFIX",
    "KeyCache",
    "Principal",
    "authenticate",
    "create_key",
    "ensure_bootstrap_key",
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


def create_key(session: Session, name: str, scopes: Iterable[str]) -> str:
    """Store a new key named `name` and return it; only its hash is kept."""
    if session.scalars(sa.select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise ValueError(f"an API key named {name!r} already exists")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(name=name, prefix=key[:8], key_hash=_hash(key), scopes=_check_scopes(scopes))
    )
    return key


def ensure_bootstrap_key(session: Session, token: str) -> None:
    """Make `token` (from MPT_ADMIN_TOKEN) a valid admin key, replacing an older one."""
    existing = session.scalars(sa.select(ApiKey).where(ApiKey.name == BOOTSTRAP_NAME)).first()
    digest = _hash(token)
    if existing is None:
        session.add(
            ApiKey(
                name=BOOTSTRAP_NAME, prefix=token[:8], key_hash=digest, scopes=[Scope.ADMIN.value]
            )
        )
    elif existing.key_hash != digest or existing.revoked_at is not None:
        existing.prefix, existing.key_hash, existing.revoked_at = token[:8], digest, None


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal behind `key`, or None for an unknown or revoked key."""
    digest = _hash(key)
    candidates = session.scalars(
        sa.select(ApiKey).where(ApiKey.prefix == key[:8], ApiKey.revoked_at.is_(None))
    )
    for row in candidates:
        if hmac.compare_digest(row.key_hash, digest):
            row.last_used_at = utc_now()
            return Principal(row.name, frozenset(row.scopes))
    return None


class KeyCache:
    """Valid keys remembered for `ttl` seconds, so a request costs no database round trip.
    A revoked key stops working within `ttl`; unknown keys are always looked up."""

    def __init__(
        self, sessions: sessionmaker[Session], ttl: float = 30.0, max_entries: int = 10_000
    ) -> None:
        self.sessions, self.ttl, self.max_entries = sessions, ttl, max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def cached(self, key: str) -> Principal | None:
        """The principal of a key seen valid within `ttl`, without touching the database."""
        hit = self._entries.get(_hash(key))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def principal(self, key: str) -> Principal | None:
        """`cached`, or else the database's answer (remembered when valid)."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        digest, now = _hash(key), time.monotonic()
        with self.sessions() as session:
            principal = authenticate(session, key)
            session.commit()
        if principal is not None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (principal, now + self.ttl)
        return principal

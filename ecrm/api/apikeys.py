"""API keys: `ecrm_<prefix>_<secret>`, shown once, stored as the prefix and a SHA-256 hash.

The prefix finds the row without a scan and names the key in logs; the hash is compared in
constant time. A key carries its scopes (ecrm.api.scopes); its name is unique among the keys
not revoked, and `ecrm apikey revoke NAME` finds it by that name. A revoked key stays in the table
(for audit), refused. Creating and revoking take the `now` their caller read from its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.api.models import NAME_MAX, ApiKey
from ecrm.api.scopes import ALL_SCOPES, Scope, scope_set
from ecrm.errors import EcrmError

KEY_PATTERN = re.compile(r"ecrm_(?P<prefix>[A-Za-z0-9_-]{8})_[A-Za-z0-9_-]{32,200}")
NAME_PATTERN = re.compile(r"\w[\w .@-]*")  # letters (any script), digits, and _ . @ - and spaces inside


def check_key_name(name: str) -> str:
    """`name` if it can name a key, else an `EcrmError` saying what a name may hold."""
    if not 1 <= len(name) <= NAME_MAX:
        raise EcrmError(f"an API key's name has 1 to {NAME_MAX} characters, not {len(name)}")
    if not NAME_PATTERN.fullmatch(name):
        raise EcrmError(f"an API key's name holds letters, digits, spaces and _ . @ -, and starts with a letter or "
                        f"digit; {name!r} does not")
    return name


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(session: AsyncSession, name: str, now: datetime,
                         scopes: Iterable[Scope | str] = ALL_SCOPES) -> str:
    """Store a new key named `name` with `scopes`, created at `now`, and return it in plain text;
    this is the only time it is seen. Code that makes keys for itself (tests, the demo) gets every
    scope unless it says; `ecrm apikey create` asks for `ingest` unless told otherwise."""
    check_key_name(name)
    chosen = scope_set(scopes)
    taken = f"an API key named {name!r} is already in use: pick another name, or `ecrm apikey revoke {name}` first"
    if await _live_named(session, name) is not None:
        raise EcrmError(taken)
    prefix = secrets.token_urlsafe(6)
    key = f"ecrm_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(name=name, prefix=prefix, secret_hash=_hash(key), scopes=chosen, created_at=now))
    try:
        await session.flush()
    except IntegrityError as exc:  # a key of that name was created at the same moment
        raise EcrmError(taken) from exc
    return key


async def _live_named(session: AsyncSession, name: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))


async def check_api_key(session: AsyncSession, presented: str) -> ApiKey | None:
    """The live key matching `presented`, or None (malformed, unknown, wrong secret or revoked)."""
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == match["prefix"]))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(presented)):
        return None
    return None if row.revoked_at is not None else row


async def revoke_api_key(session: AsyncSession, name_or_key: str, now: datetime) -> ApiKey | None:
    """Refuse the live key named `name_or_key` (or that key, given whole) from `now` on, and
    return it; None if there is no such live key."""
    match = KEY_PATTERN.fullmatch(name_or_key)
    if match is None:
        row = await _live_named(session, name_or_key)
    else:
        row = await session.scalar(select(ApiKey).where(ApiKey.prefix == match["prefix"], ApiKey.revoked_at.is_(None)))
        if row is not None and not hmac.compare_digest(row.secret_hash, _hash(name_or_key)):
            row = None
    if row is None:
        return None
    row.revoked_at = now
    await session.flush()
    return row


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    """Every key, revoked ones too, oldest first."""
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def key_summary(key: ApiKey) -> dict[str, Any]:
    """What `ecrm apikey list --json` prints of a key: never its secret or hash."""
    return {"name": key.name, "prefix": f"ecrm_{key.prefix}_", "scopes": [s.value for s in Scope if s in key.scopes],
            "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}

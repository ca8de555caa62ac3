"""API keys: `ecrm_<prefix>_<secret>`, shown once, stored as the prefix and a SHA-256 hash.

The prefix finds the row without a scan and names the key in logs; the hash is compared in
constant time. A revoked key stays in the table, refused. Creating and revoking take the `now`
their caller read from its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.api.models import NAME_MAX, ApiKey
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


async def create_api_key(session: AsyncSession, name: str, now: datetime) -> str:
    """Store a new key named `name`, created at `now`, and return it in plain text; this is the
    only time it is seen."""
    check_key_name(name)
    prefix = secrets.token_urlsafe(6)
    key = f"ecrm_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(name=name, prefix=prefix, secret_hash=_hash(key), created_at=now))
    await session.flush()
    return key


async def check_api_key(session: AsyncSession, presented: str) -> ApiKey | None:
    """The live key matching `presented`, or None (malformed, unknown, wrong secret or revoked)."""
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == match["prefix"]))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(presented)):
        return None
    return None if row.revoked_at is not None else row


async def revoke_api_key(session: AsyncSession, prefix_or_key: str, now: datetime) -> bool:
    """Refuse the key (given whole, or by its 8-character prefix) from `now` on; False if no such live key."""
    match = KEY_PATTERN.fullmatch(prefix_or_key)
    prefix = match["prefix"] if match else prefix_or_key
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if row is None:
        return False
    row.revoked_at = now
    await session.flush()
    return True

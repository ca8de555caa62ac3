"""Browser subscriptions: validate one as the browser's `PushSubscription.toJSON()` gives it,
store it for a profile, remove it.

The endpoint must be an https URL (push services serve nothing else, RFC 8030 section 8) of at
most `MAX_ENDPOINT` characters; `keys.p256dh` a base64url uncompressed P-256 point on the curve;
`keys.auth` 16 base64url-encoded bytes (RFC 8291). Storing an endpoint already stored updates it
in place and re-points it to the posting profile (a browser belongs to whoever subscribed last),
with its keys renewed and any invalid mark cleared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.profiles.ingest import Text, ensure_profile, no_nul
from ecrm.push import vapid
from ecrm.push.models import MAX_ENDPOINT, MAX_USER_AGENT, PushSubscription

AUTH_BYTES = 16


def _https_url(value: str) -> str:
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        raise PydanticCustomError("endpoint", "must be an https:// URL in plain ASCII, as the browser gives it")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None  # e.g. an unclosed [IPv6 bracket
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise PydanticCustomError("endpoint", "must be an https:// URL of a push service")
    return value


def _p256dh(value: str) -> str:
    try:
        vapid.public_key_from(value)
    except ValueError as exc:
        raise PydanticCustomError("p256dh", "{problem}", {"problem": str(exc)}) from None
    return value


def _auth(value: str) -> str:
    try:
        raw = vapid.b64url_decode(value)
    except ValueError as exc:
        raise PydanticCustomError("auth", "{problem}", {"problem": str(exc)}) from None
    if len(raw) != AUTH_BYTES:
        raise PydanticCustomError("auth", f"must decode to {AUTH_BYTES} bytes, not {len(raw)}")
    return value


Endpoint = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ENDPOINT),
                     AfterValidator(_https_url)]
P256dh = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                   AfterValidator(_p256dh)]
Auth = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32), AfterValidator(_auth)]
UserAgent = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_USER_AGENT),
                      AfterValidator(no_nul)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeysIn(_In):
    p256dh: P256dh
    auth: Auth


class SubscriptionIn(_In):
    # `expirationTime` is part of the browser's toJSON(); accepted and not stored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    endpoint: Endpoint
    keys: KeysIn
    expirationTime: float | None = None  # the browser's own name


class SubscribeIn(_In):
    external_id: Text
    subscription: SubscriptionIn
    user_agent: UserAgent | None = None


class UnsubscribeIn(_In):
    endpoint: Endpoint


async def subscribe(session: AsyncSession, data: SubscribeIn, now: datetime) -> tuple[PushSubscription, bool]:
    """Store the subscription for the profile `data.external_id` (created bare if new); returns
    it and whether it was created (False: the endpoint was stored already, and is updated)."""
    profile_id, _ = await ensure_profile(session, data.external_id, now)
    sub = data.subscription
    values = {"profile_id": profile_id, "p256dh": sub.keys.p256dh, "auth": sub.keys.auth,
              "user_agent": data.user_agent or None, "invalid_at": None}
    stmt = dialect_insert(session, PushSubscription).values(endpoint=sub.endpoint, created_at=now, **values)
    new_id = await session.scalar(stmt.on_conflict_do_nothing(index_elements=["endpoint"])
                                  .returning(PushSubscription.id))
    if new_id is None:
        await session.execute(update(PushSubscription).where(PushSubscription.endpoint == sub.endpoint)
                              .values(**values), execution_options={"synchronize_session": False})
    found = await session.scalar(select(PushSubscription).where(PushSubscription.endpoint == sub.endpoint)
                                 .execution_options(populate_existing=True))
    assert found is not None  # just written in this transaction
    return found, new_id is not None


async def unsubscribe(session: AsyncSession, endpoint: str) -> bool:
    """Remove the subscription at `endpoint`; False when none was stored."""
    result = await session.execute(delete(PushSubscription).where(PushSubscription.endpoint == endpoint)
                                   .returning(PushSubscription.id))
    return result.first() is not None

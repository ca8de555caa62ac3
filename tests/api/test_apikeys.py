"""API keys: shape, storage as a hash, checking and revocation, and when each happened."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import check_api_key, create_api_key, revoke_api_key
from ecrm.api.models import ApiKey
from ecrm.clock import FrozenClock
from tests.conftest import T0


async def test_a_new_key_has_the_documented_shape_and_only_its_hash_is_stored(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now())
    assert re.fullmatch(r"ecrm_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{32,}", key)
    async with sessions() as session:
        row = await session.scalar(select(ApiKey))
    assert row is not None
    assert (row.name, row.prefix, row.created_at, row.revoked_at) == ("shop", key[5:13], T0, None)
    assert row.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key[14:] not in row.secret_hash


async def test_check_api_key_accepts_the_key_and_refuses_it_once_revoked(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now())
        other = await create_api_key(session, "back office", clock.now())
    clock.advance(timedelta(days=30))
    async with sessions.begin() as session:
        found = await check_api_key(session, key)
        assert found is not None and found.name == "shop"
        assert await check_api_key(session, key[:13] + "_" + other[14:]) is None
        assert await revoke_api_key(session, "shop", clock.now())
        assert not await revoke_api_key(session, "shop", clock.now())
    async with sessions() as session:
        assert await check_api_key(session, key) is None
        assert await check_api_key(session, other) is not None
        revoked = await session.scalar(select(ApiKey).where(ApiKey.name == "shop"))
    assert revoked is not None and (revoked.created_at, revoked.revoked_at) == (T0, T0 + timedelta(days=30))

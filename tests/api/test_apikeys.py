"""API keys: shape, storage as a hash, scopes, names unique among live keys, checking, revocation
and listing, and when each happened."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import check_api_key, create_api_key, key_summary, list_api_keys, revoke_api_key
from ecrm.api.models import ApiKey
from ecrm.api.scopes import ALL_SCOPES, Scope
from ecrm.clock import FrozenClock
from ecrm.errors import EcrmError
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


async def test_a_key_keeps_its_scopes_and_needs_one_known_scope(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        shop = await create_api_key(session, "shop", clock.now(), [Scope.INGEST, "admin"])
        code = await create_api_key(session, "code", clock.now())
        with pytest.raises(EcrmError, match="unknown API key scope 'root'; the scopes are ingest, send, admin"):
            await create_api_key(session, "root", clock.now(), ["root"])
        with pytest.raises(EcrmError, match="needs at least one scope"):
            await create_api_key(session, "none", clock.now(), [])
    async with sessions() as session:
        found, every = await check_api_key(session, shop), await check_api_key(session, code)
        stored = await session.scalar(text("SELECT scopes FROM api_keys WHERE name = 'shop'"))
    assert found is not None and found.scopes == {Scope.INGEST, Scope.ADMIN}
    assert every is not None and every.scopes == ALL_SCOPES
    assert stored == "admin ingest"


async def test_a_name_is_unique_among_live_keys_and_free_again_once_revoked(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        first = await create_api_key(session, "shop", clock.now())
    async with sessions.begin() as session:
        with pytest.raises(EcrmError, match="an API key named 'shop' is already in use"):
            await create_api_key(session, "shop", clock.now())
    async with sessions.begin() as session:
        revoked = await revoke_api_key(session, first, clock.now())  # the whole key works too
        assert revoked is not None and revoked.name == "shop"
        second = await create_api_key(session, "shop", clock.now() + timedelta(minutes=1))
    async with sessions.begin() as session:
        assert await revoke_api_key(session, first, clock.now()) is None
        assert await revoke_api_key(session, first[:-1] + "x", clock.now()) is None  # right prefix, wrong secret
        assert await check_api_key(session, second) is not None
        keys = await list_api_keys(session)
    assert [(k.name, k.revoked_at) for k in keys] == [("shop", T0), ("shop", None)]


async def test_the_json_summary_of_a_key_holds_no_secret(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now(), [Scope.ADMIN, Scope.INGEST])
        await revoke_api_key(session, "shop", clock.now() + timedelta(days=1))
        summary = key_summary((await list_api_keys(session))[0])
    assert summary == {"name": "shop", "prefix": key[:14], "scopes": ["ingest", "admin"],
                       "created_at": "2026-01-01T09:00:00+00:00", "revoked_at": "2026-01-02T09:00:00+00:00"}

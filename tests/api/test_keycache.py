"""The server's API-key cache: an answer is reused for KEY_TTL seconds, so a revoked key is
refused within that time, and a key is read from the database once per TTL, not per request."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import create_api_key, revoke_api_key
from ecrm.api.keycache import KEY_TTL, ApiKeyCache
from ecrm.clock import FrozenClock


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingSessions:
    """The session factory, counting the sessions opened (one per database read of a key)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.opened = 0

    def __call__(self) -> AsyncSession:
        self.opened += 1
        return self.sessions()


async def test_a_key_is_read_once_per_ttl_and_a_revocation_is_seen_when_it_ends(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now())
    timer, counting = Timer(), CountingSessions(sessions)
    cache = ApiKeyCache(counting, timer=timer)  # type: ignore[arg-type]
    for _ in range(5):
        found = await cache.check(key)
        assert found is not None and found.name == "shop"
    assert counting.opened == 1
    async with sessions.begin() as session:
        assert await revoke_api_key(session, "shop", clock.now())
    timer.now += KEY_TTL - 0.1
    assert await cache.check(key) is not None  # still within the TTL
    timer.now += 0.2
    assert await cache.check(key) is None
    assert counting.opened == 2


async def test_unknown_and_malformed_keys_are_refused_and_malformed_ones_never_read(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now())
    counting = CountingSessions(sessions)
    cache = ApiKeyCache(counting, timer=Timer())  # type: ignore[arg-type]
    assert await cache.check("not-a-key") is None
    assert counting.opened == 0
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert await cache.check(tampered) is None
    assert await cache.check(key) is not None
    assert counting.opened == 2


async def test_concurrent_requests_with_a_key_not_yet_known_share_one_read(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        key = await create_api_key(session, "shop", clock.now())
    counting = CountingSessions(sessions)
    cache = ApiKeyCache(counting, timer=Timer())  # type: ignore[arg-type]
    found = await asyncio.gather(*(cache.check(key) for _ in range(20)))
    assert {k.name for k in found if k is not None} == {"shop"} and None not in found
    assert counting.opened == 1

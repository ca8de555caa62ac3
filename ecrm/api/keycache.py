"""API keys remembered in the server process for a few seconds, so a request costs no database
round trip to authenticate.

An answer (the live key, or "no such live key") is kept for `KEY_TTL` seconds per presented
key, looked up by the key's SHA-256 hash (computed once per request, microseconds). So
`ecrm apikey revoke` takes effect in every server process within `KEY_TTL` seconds; a new key
works at once (nobody can have presented it before it existed, so no stale "unknown" is
cached unless a client guessed it). The cache holds at most `KEY_SLOTS` answers, dropping the
least recently used: a client trying random keys costs one database read per key, as before.
Requests with one key while its answer is being read wait for that one read (at expiry, 50
concurrent clients cost one read, not 50).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import KEY_PATTERN, check_api_key
from ecrm.api.models import ApiKey
from ecrm.lru import LruCache

KEY_TTL = 5.0  # seconds a revoked key may still be accepted by a process that saw it live
KEY_SLOTS = 1024


@dataclass(frozen=True)
class _Answer:
    key: ApiKey | None
    expires: float


class ApiKeyCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float = KEY_TTL,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._timer = timer
        self._answers: LruCache[str, _Answer] = LruCache(KEY_SLOTS)
        self._reading: dict[str, asyncio.Task[ApiKey | None]] = {}

    async def check(self, presented: str) -> ApiKey | None:
        """The live key matching `presented` as of at most `ttl` seconds ago, or None."""
        if KEY_PATTERN.fullmatch(presented) is None:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        answer = self._answers.get(digest)
        if answer is not None and answer.expires > self._timer():
            return answer.key
        reading = self._reading.get(digest)
        if reading is None:
            reading = asyncio.create_task(self._read(digest, presented))
            self._reading[digest] = reading
            reading.add_done_callback(lambda _: self._reading.pop(digest, None))
        return await asyncio.shield(reading)  # one waiter hanging up does not cancel the others' read

    async def _read(self, digest: str, presented: str) -> ApiKey | None:
        async with self._sessions() as session:
            key = await check_api_key(session, presented)
        self._answers.put(digest, _Answer(key, self._timer() + self._ttl))
        return key

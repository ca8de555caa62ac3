"""Group commit: concurrent single requests share transactions, and the outcome is what the
same requests give one after another (on SQLite and PostgreSQL); one request's failure stays
its own."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.group_commit import GroupCommit
from ecrm.api.keys import WRITERS
from ecrm.profiles.models import Consent, Event, Profile
from tests.api.conftest import Client
from tests.rows import count_rows

N = 40


async def test_concurrent_events_share_transactions_and_each_gets_its_own_event(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    async def post(n: int) -> int:
        resp = await api.post("/v1/events", json={"external_id": f"c-{n % 5}", "name": "page.viewed",
                                                  "properties": {"n": n}}, headers=auth)
        assert resp.status == 202
        return int((await resp.json())["id"])

    ids = await asyncio.gather(*(post(n) for n in range(N)))
    async with sessions() as session:
        stored: dict[int, dict[str, int]] = dict((await session.execute(select(Event.id, Event.properties))).all())
    assert {event_id: stored[event_id]["n"] for event_id in ids} == dict(zip(ids, range(N), strict=True))
    assert await count_rows(sessions, Profile) == 5
    assert api.app[WRITERS].events.flushes < N


async def test_concurrent_upserts_of_one_profile_apply_one_after_another(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    """Each answer shows the profile after its own update and every earlier one: with one trait
    each, the answers' traits form a chain 1, 2, ..., N keys, and exactly the first created it."""
    async def post(n: int) -> tuple[int, dict[str, Any]]:
        body = {"external_id": "c-1", "traits": {f"t{n}": n},
                "consent": {"email": {"state": "granted" if n % 2 else "withdrawn"}}}
        resp = await api.post("/v1/profiles", json=body, headers=auth)
        return resp.status, await resp.json()

    answers = sorted(await asyncio.gather(*(post(n) for n in range(N))), key=lambda a: len(a[1]["traits"]))
    assert [status for status, _ in answers] == [201] + [200] * (N - 1)
    chain = [set(body["traits"]) for _, body in answers]
    assert all(len(later - earlier) == 1 and earlier < later for earlier, later in itertools.pairwise(chain))
    last = answers[-1][1]
    async with sessions() as session:
        profile = await session.scalar(select(Profile))
        consent = await session.scalar(select(Consent))
    assert profile is not None and profile.traits == last["traits"]
    assert consent is not None and consent.state == last["consent"]["email"]["state"]
    assert api.app[WRITERS].profiles.flushes < N


async def test_a_refused_upsert_among_concurrent_ones_is_refused_alone(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    big = {"external_id": "c-big", "traits": {"blob": "x" * 70_000}}
    posts = [api.post("/v1/profiles", json={"external_id": f"c-{n}"}, headers=auth) for n in range(10)]
    statuses = [resp.status for resp in await asyncio.gather(api.post("/v1/profiles", json=big, headers=auth),
                                                               *posts)]
    assert statuses == [422] + [201] * 10
    assert await count_rows(sessions, Profile) == 10


class Failing(Exception):
    pass


async def test_a_failing_write_fails_only_its_own_request() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        await asyncio.sleep(0)
        if 13 in items:
            raise Failing("13 broke the transaction")
        return [item * 2 if item % 5 else ValueError(f"{item} is refused") for item in items]

    writer: GroupCommit[int, int] = GroupCommit(flush)
    outcomes = await asyncio.gather(*(writer.submit(n) for n in range(1, 21)), return_exceptions=True)
    await writer.close()
    for n, outcome in zip(range(1, 21), outcomes, strict=True):
        if n == 13:
            assert isinstance(outcome, Failing)
        elif n % 5 == 0:
            assert isinstance(outcome, ValueError) and str(outcome) == f"{n} is refused"
        else:
            assert outcome == n * 2
    assert batches[0] == list(range(1, 21))  # all pending at once: one flush, then each alone
    assert batches[1:] == [[n] for n in range(1, 21)]


async def test_a_closed_writer_writes_what_is_pending_and_refuses_more() -> None:
    async def flush(items: Sequence[int]) -> list[int | Exception]:
        return list(items)

    writer: GroupCommit[int, int] = GroupCommit(flush, max_batch=3)
    pending = [asyncio.ensure_future(writer.submit(n)) for n in range(7)]
    await asyncio.sleep(0)
    await writer.close()
    assert [await p for p in pending] == list(range(7))
    assert writer.flushes == 3
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit(8)


async def test_flushes_overlap_but_items_of_one_key_apply_in_arrival_order_never_at_once() -> None:
    applied: list[tuple[str, int]] = []
    in_flight: set[str] = set()
    overlapped = False

    async def flush(items: Sequence[tuple[str, int]]) -> list[int | Exception]:
        nonlocal overlapped
        keys = {key for key, _ in items}
        assert not keys & in_flight, "two flushes hold one key"
        overlapped = overlapped or bool(in_flight)
        in_flight.update(keys)
        await asyncio.sleep(0.01)
        applied.extend(items)
        in_flight.difference_update(keys)
        return [n for _, n in items]

    writer: GroupCommit[tuple[str, int], int] = GroupCommit(flush, max_batch=4, concurrency=3,
                                                            key=lambda item: item[0])
    items = [("abcdefghij"[n % 10] if n % 4 else "a", n) for n in range(40)]
    assert await asyncio.gather(*(writer.submit(item) for item in items)) == list(range(40))
    await writer.close()
    for key in "abcdefghij":
        assert [n for k, n in applied if k == key] == [n for k, n in items if k == key]
    assert overlapped

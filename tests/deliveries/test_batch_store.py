"""The `BatchStore` contract, for each database's store: SQLAlchemy Core on SQLite, asyncpg on
PostgreSQL. Both write statuses only as the state machine allows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run
from ecrm.campaigns.load import load_campaign
from ecrm.clock import FrozenClock
from ecrm.deliveries.batch_store import ERASED, BatchStore, Started
from ecrm.deliveries.claims import INTERRUPTED
from ecrm.deliveries.models import Delivery, Send, SendBatch
from ecrm.deliveries.sends import open_send
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.deliveries.store import Change
from ecrm.profiles.models import Profile
from ecrm.runtime import open_batch_store
from ecrm.settings import Settings
from ecrm.types import ChannelKind, SendSource
from tests.conftest import ROOT
from tests.factories import add_profiles

CLOCK = FrozenClock()


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[BatchStore]:
    batches = open_batch_store(engine, CLOCK)
    yield batches
    await batches.aclose()


async def new_send(settings: Settings, sessions: async_sessionmaker[AsyncSession], key: str = "first") -> int:
    """A campaign run's send (the id the store knows)."""
    spec = load_campaign(ROOT / "campaigns" / "welcome.yaml", settings)
    run_id = (await create_run(sessions, spec, "welcome.yaml", key, clock=CLOCK)).run_id
    async with sessions.begin() as session:
        send = await open_send(session, SendSource.CAMPAIGN_RUN, run_id, ChannelKind.EMAIL, "welcome", "welcome",
                               CLOCK.now())
    return send.id


async def profile_ids(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    await add_profiles(sessions, count, ("en", "fa"))
    async with sessions() as session:
        return list(await session.scalars(select(Profile.id).order_by(Profile.id)))


async def started_batch(store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                        people: int, first_chunk: int) -> tuple[int, Started]:
    """A new send with `people` queued in batch 0, taken over with `first_chunk` in flight."""
    send_id, ids = await new_send(settings, sessions), await profile_ids(sessions, people)
    await store.queue_members(send_id, 0, ids, "email")
    return send_id, await store.start(send_id, 0, first_chunk)


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[object, ...]]:
    async with sessions() as session:
        result = await session.execute(select(
            Delivery.status, Delivery.provider, Delivery.provider_message_id, Delivery.error, Delivery.attempts,
            Delivery.sent_at.is_not(None), Delivery.failed_at.is_not(None)).order_by(Delivery.id))
    return [tuple(row) for row in result]


async def reasons(sessions: async_sessionmaker[AsyncSession]) -> list[str | None]:
    async with sessions() as session:
        return list(await session.scalars(select(Delivery.reason).order_by(Delivery.id)))


async def in_flight(sessions: async_sessionmaker[AsyncSession], send_id: int) -> tuple[object, ...]:
    async with sessions() as session:
        batch = await session.get_one(SendBatch, (send_id, 0), populate_existing=True)
    return batch.attempt, batch.inflight_first, batch.inflight_last


async def test_planning_queues_each_profile_once_and_skips_erased_ones(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    send_id, ids = await new_send(settings, sessions), await profile_ids(sessions, 5)

    assert await store.queue_members(send_id, 0, ids[:3], "email") == 3
    assert await store.queue_members(send_id, 1, ids, "email") == 2  # the first three are in the send already
    assert await store.queue_members(send_id, 2, ids, "email") == 0  # nobody new: no batch 2
    async with sessions() as session:
        batches = list(await session.scalars(select(SendBatch.batch).where(SendBatch.send_id == send_id)))
        await session.execute(delete(Profile).where(Profile.id == ids[0]))
        await session.commit()
    assert sorted(batches) == [0, 1]
    other_send = await new_send(settings, sessions, "second")
    assert await store.queue_members(other_send, 0, ids, "email") == 4  # all again but the erased one


async def test_taking_a_batch_over_reads_it_in_order_and_settles_what_a_dead_owner_and_erasure_left(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    send_id, ids = await new_send(settings, sessions), await profile_ids(sessions, 6)
    await store.queue_members(send_id, 0, ids, "email")
    first = await store.start(send_id, 0, 2)  # an attempt marks two in flight, then dies
    assert [r.profile_id for r in first.recipients] == ids and first.erased == 0
    assert first.recipients[1].traits == {"points": 1} and first.recipients[1].locale == "fa"
    async with sessions.begin() as session:
        await session.execute(delete(Profile).where(Profile.id == ids[5]))

    second = await store.start(send_id, 0, 3)

    assert second.owner.attempt == first.owner.attempt + 1
    assert [r.profile_id for r in second.recipients] == ids[2:5] and second.erased == 1
    delivery_ids = [r.delivery_id for r in second.recipients]
    assert await in_flight(sessions, send_id) == (second.owner.attempt, delivery_ids[0], delivery_ids[2])
    assert [(r[0], r[3]) for r in await rows(sessions)] == (
        [("unknown", INTERRUPTED)] * 2 + [("queued", None)] * 3 + [("skipped", ERASED)])
    assert await reasons(sessions) == ["interrupted"] * 2 + [None] * 3 + ["erased"]


async def test_recording_writes_each_row_its_own_outcome_and_moves_the_mark(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    send_id, started = await started_batch(store, settings, sessions, 8, 5)
    d = [r.delivery_id for r in started.recipients]
    changes = [
        Change(d[0], DeliveryStatus.SENT, None, "smtp", "<a@x>"),
        Change(d[1], DeliveryStatus.FAILED, Reason.PERMANENT, error='550 "no such" mailbox, {x} \\ ت'),
        Change(d[2], DeliveryStatus.QUEUED, error="server busy"),
        Change(d[3], DeliveryStatus.SENT, None, "other", None),
        Change(d[4], DeliveryStatus.SENT, None, "smtp", "<c@x>"),
    ]

    assert await store.record(started.owner, changes, (d[5], d[6]))
    assert await in_flight(sessions, send_id) == (started.owner.attempt, d[5], d[6])
    assert await store.record(started.owner, [Change(d[5], DeliveryStatus.QUEUED, error="not attempted")], (d[7], d[7]))
    assert await store.record(started.owner, [Change(d[6], DeliveryStatus.FAILED, Reason.TECHNICAL,
                                                     error="bad address")], None)
    assert await store.record(started.owner, [], None)

    assert await in_flight(sessions, send_id) == (started.owner.attempt, None, None)
    assert await rows(sessions) == [
        ("sent", "smtp", "<a@x>", None, 1, True, False),
        ("failed", None, None, '550 "no such" mailbox, {x} \\ ت', 1, False, True),
        ("queued", None, None, "server busy", 1, False, False),
        ("sent", "other", None, None, 1, True, False),
        ("sent", "smtp", "<c@x>", None, 1, True, False),
        ("queued", None, None, "not attempted", 1, False, False),
        ("failed", None, None, "bad address", 1, False, True),
        ("queued", None, None, None, 0, False, False),
    ]
    assert await reasons(sessions) == [None, "permanent", None, None, None, None, "technical", None]


async def test_a_row_never_moves_back_whatever_the_send_path_writes(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, started = await started_batch(store, settings, sessions, 3, 3)
    d = [r.delivery_id for r in started.recipients]
    await store.record(started.owner, [Change(d[0], DeliveryStatus.SENT, None, "smtp", "<a@x>"),
                                       Change(d[1], DeliveryStatus.FAILED, Reason.PERMANENT, error="550")], None)
    async with sessions.begin() as session:  # a receipt came in for the first
        await session.execute(update(Delivery).where(Delivery.id == d[0]).values(status="delivered"))

    late = [Change(d[0], DeliveryStatus.QUEUED, error="retry"),
            Change(d[1], DeliveryStatus.SENT, None, "smtp", "<b@x>")]
    assert await store.record(started.owner, late, None)

    assert [r[:4] for r in (await rows(sessions))[:2]] == [("delivered", "smtp", "<a@x>", None),
                                                           ("failed", None, None, "550")]


async def test_an_attempt_taken_over_still_records_its_outcomes_but_learns_it_lost_the_batch(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    send_id, older = await started_batch(store, settings, sessions, 3, 1)
    newer = await store.start(send_id, 0, 1)  # it fails the older one's chunk in flight as interrupted
    mine = older.recipients[1].delivery_id

    assert not await store.record(older.owner, [Change(mine, DeliveryStatus.SENT, None, "smtp", "<m@x>")], None)

    assert (await rows(sessions))[1][:3] == ("sent", "smtp", "<m@x>")
    assert await in_flight(sessions, send_id) == (newer.owner.attempt, older.recipients[1].delivery_id,
                                                 older.recipients[1].delivery_id)


async def test_a_send_is_done_once_planned_and_its_last_batch_has_nothing_queued(
    store: BatchStore, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    send_id, started = await started_batch(store, settings, sessions, 2, 2)
    d = [r.delivery_id for r in started.recipients]
    assert not await store.close(send_id, None)  # not planned yet
    async with sessions.begin() as session:
        await session.execute(update(Send).where(Send.id == send_id).values(planned_at=CLOCK.now()))

    assert not await store.close(send_id, 0)  # two still queued
    await store.record(started.owner, [Change(i, DeliveryStatus.SENT, None, "smtp", f"<{i}@x>") for i in d], None)
    assert await store.close(send_id, 0)

    async with sessions() as session:
        send = await session.get_one(Send, send_id)
        batch = await session.get_one(SendBatch, (send_id, 0))
    assert send.done_at == CLOCK.now() and batch.done_at == CLOCK.now()


async def test_a_send_is_read_with_what_its_jobs_compose_from(
    store: BatchStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions.begin() as session:
        opened = await open_send(session, SendSource.TRANSACTIONAL, 7, ChannelKind.EMAIL, "receipt", "receipt",
                                 CLOCK.now(), {"order_id": "#1001", "lines": [{"sku": "a", "qty": 2}]})
    assert await store.send(opened.id) == opened
    with pytest.raises(LookupError):
        await store.send(opened.id + 1000)

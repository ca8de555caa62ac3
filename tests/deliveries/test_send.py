"""Claims on a batch: a worker killed outright (no chance to record) leaves at most one chunk in
doubt, which the next attempt fails as "interrupted" instead of resending; an older attempt
still running when a newer one takes the batch over records its chunk in flight and stops. A
delivery whose profile was erased after it was planned is failed, not sent, and the batch
still closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import RunRef, create_run, plan_run
from ecrm.campaigns.load import load_campaign
from ecrm.deliveries.batch_store import ERASED, span
from ecrm.deliveries.batches import close_batch
from ecrm.deliveries.claims import INTERRUPTED, SupersededError, mark_in_flight, take_over
from ecrm.deliveries.jobs import composer_for
from ecrm.deliveries.models import Delivery, RunBatch
from ecrm.deliveries.queued import read_queued
from ecrm.deliveries.send import CLAIM_CHUNK, send_batch
from ecrm.profiles.models import Profile
from ecrm.runtime import Runtime, open_runtime
from ecrm.settings import Settings
from ecrm.worker import in_process_queue
from tests.conftest import ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer
from tests.waiting import wait_for


@pytest.fixture
async def runtime(send_settings: Settings) -> AsyncIterator[Runtime]:
    settings = send_settings.model_copy(update={"send": send_settings.send.model_copy(update={"batch_size": 1000})})
    runtime = open_runtime(settings, in_process_queue(settings))
    yield runtime
    await runtime.close()


async def planned_run(runtime: Runtime) -> RunRef:
    """A run planned into one batch; the in-process queue is not joined, so nothing is sent yet."""
    run = await create_run(runtime.sessions, load_campaign(ROOT / "campaigns" / "welcome.yaml", runtime.settings),
                           "welcome.yaml")
    await plan_run(runtime, run.run_id)
    return run


async def statuses(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        rows = await session.execute(select(Delivery.status, Delivery.error))
    return sorted((status, error) for status, error in rows)


async def test_a_hard_crash_leaves_one_chunk_in_doubt_and_the_retry_sends_the_rest_once(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, CLAIM_CHUNK + 50, ("en", "fa", "th"))
    run = await planned_run(runtime)
    async with runtime.engine.begin() as connection:  # a first attempt marks its first chunk in flight, then dies
        owner = await take_over(connection, run.run_id, 0)
        first = (await read_queued(connection, run.run_id, 0))[0][:CLAIM_CHUNK]
        await mark_in_flight(connection, owner, span(first))

    outcome = await send_batch(runtime, await composer_for(runtime, run.run_id), run.run_id, 0)

    assert (outcome.sent, outcome.failed, outcome.retry) == (50, 0, 0)
    doubtful = {r.email for r in first}
    assert smtp.handler.per_recipient() == {e: 1 for e in emails if e not in doubtful}
    assert await statuses(sessions) == sorted([("failed", INTERRUPTED)] * CLAIM_CHUNK + [("sent", None)] * 50)
    async with sessions() as session:
        batch = await session.get_one(RunBatch, (run.run_id, 0))
    assert (batch.attempt, batch.inflight_first, batch.inflight_last) == (2, None, None)


async def test_an_older_attempt_taken_over_mid_chunk_records_that_chunk_and_stops(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, CLAIM_CHUNK * 2 + 10, ("en", "fa", "th"))
    run = await planned_run(runtime)
    composer = await composer_for(runtime, run.run_id)
    smtp.handler.delay = 0.005
    older = asyncio.create_task(send_batch(runtime, composer, run.run_id, 0))
    await wait_for(lambda: len(smtp.handler.received) >= 5)

    newer = await send_batch(runtime, composer, run.run_id, 0)  # e.g. arq ran the job again after a timeout
    with pytest.raises(SupersededError, match="taken over"):
        await older

    assert newer.sent == CLAIM_CHUNK + 10  # the older attempt's chunk in flight is not resent
    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    assert await statuses(sessions) == [("sent", None)] * len(emails)  # the older attempt recorded its chunk


async def test_a_profile_erased_after_planning_is_failed_not_sent_and_the_run_still_finishes(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 5, ("en", "fa", "th"))
    run = await planned_run(runtime)
    async with sessions.begin() as session:  # erased between the plan's insert and the send, bypassing erase_profile
        await session.execute(delete(Profile).where(Profile.email == emails[0]))

    outcome = await send_batch(runtime, await composer_for(runtime, run.run_id), run.run_id, 0)

    assert (outcome.sent, outcome.failed, outcome.retry) == (4, 1, 0)
    assert smtp.handler.per_recipient() == dict.fromkeys(emails[1:], 1)
    assert await statuses(sessions) == sorted([("failed", ERASED)] + [("sent", None)] * 4)
    assert await close_batch(runtime.engine, run.run_id, 0)

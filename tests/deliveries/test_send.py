"""Claims on a batch: a worker killed outright (no chance to record) leaves at most one chunk in
doubt, which the next attempt marks `unknown` ("interrupted") instead of resending; an older
attempt still running when a newer one takes the batch over records its chunk in flight and
stops. A delivery whose profile was erased after it was planned is skipped, not sent, and the
batch still closes. An adapter that raises something unforeseen gets its message recorded
`unknown`, loudly, never retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run, plan_run
from ecrm.campaigns.load import load_campaign
from ecrm.channels.base import SendResult
from ecrm.channels.registry import EMAIL
from ecrm.clock import SYSTEM_CLOCK
from ecrm.deliveries.batch_store import ERASED, span
from ecrm.deliveries.batches import close_batch
from ecrm.deliveries.claims import INTERRUPTED, SupersededError, mark_in_flight, take_over
from ecrm.deliveries.jobs import send_of, sender_for
from ecrm.deliveries.models import Delivery, SendBatch
from ecrm.deliveries.queued import read_queued
from ecrm.deliveries.send import CLAIM_CHUNK, Sender, send_batch
from ecrm.deliveries.sends import SendRef, sends_of
from ecrm.messages import OutgoingEmail
from ecrm.profiles.models import Profile
from ecrm.runtime import Runtime, open_runtime
from ecrm.settings import Settings
from ecrm.types import ChannelKind, SendSource
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


async def planned_send(runtime: Runtime) -> SendRef:
    """A run's send planned into one batch; the in-process queue is not joined, so nothing is
    sent yet."""
    run = await create_run(runtime.sessions, load_campaign(ROOT / "campaigns" / "welcome.yaml", runtime.settings),
                           "welcome.yaml")
    await plan_run(runtime, run.run_id)
    async with runtime.sessions() as session:
        (send,) = await sends_of(session, SendSource.CAMPAIGN_RUN, run.run_id)
    return await send_of(runtime, send.id)


def sender(runtime: Runtime, send: SendRef) -> Sender[OutgoingEmail]:
    return sender_for(runtime, EMAIL, send, last_try=False)


async def statuses(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        rows = await session.execute(select(Delivery.status, Delivery.error))
    return sorted((status, error) for status, error in rows)


async def test_a_hard_crash_leaves_one_chunk_in_doubt_and_the_retry_sends_the_rest_once(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, CLAIM_CHUNK + 50, ("en", "fa", "th"))
    send = await planned_send(runtime)
    async with runtime.engine.begin() as connection:  # a first attempt marks its first chunk in flight, then dies
        owner = await take_over(connection, send.id, 0, SYSTEM_CLOCK.now())
        first = (await read_queued(connection, send.id, 0))[0][:CLAIM_CHUNK]
        await mark_in_flight(connection, owner, span(first))

    outcome = await send_batch(runtime, sender(runtime, send), send.id, 0)

    assert (outcome.sent, outcome.failed, outcome.retry) == (50, 0, 0)
    doubtful = {r.email for r in first}
    assert smtp.handler.per_recipient() == {e: 1 for e in emails if e not in doubtful}
    assert await statuses(sessions) == sorted([("sent", None)] * 50 + [("unknown", INTERRUPTED)] * CLAIM_CHUNK)
    async with sessions() as session:
        batch = await session.get_one(SendBatch, (send.id, 0))
    assert (batch.attempt, batch.inflight_first, batch.inflight_last) == (2, None, None)


async def test_an_older_attempt_taken_over_mid_chunk_records_that_chunk_and_stops(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, CLAIM_CHUNK * 2 + 10, ("en", "fa", "th"))
    send = await planned_send(runtime)
    smtp.handler.delay = 0.005
    older = asyncio.create_task(send_batch(runtime, sender(runtime, send), send.id, 0))
    await wait_for(lambda: len(smtp.handler.received) >= 5)

    newer = await send_batch(runtime, sender(runtime, send), send.id, 0)  # e.g. arq ran the job again after a timeout
    with pytest.raises(SupersededError, match="taken over"):
        await older

    assert newer.sent == CLAIM_CHUNK + 10  # the older attempt's chunk in flight is not resent
    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    assert await statuses(sessions) == [("sent", None)] * len(emails)  # the older attempt recorded its chunk


async def test_a_profile_erased_after_planning_is_skipped_not_sent_and_the_send_still_finishes(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 5, ("en", "fa", "th"))
    send = await planned_send(runtime)
    async with sessions.begin() as session:  # erased between the plan's insert and the send, bypassing erase_profile
        await session.execute(delete(Profile).where(Profile.email == emails[0]))

    outcome = await send_batch(runtime, sender(runtime, send), send.id, 0)

    assert (outcome.sent, outcome.failed, outcome.retry) == (4, 1, 0)
    assert smtp.handler.per_recipient() == dict.fromkeys(emails[1:], 1)
    assert await statuses(sessions) == sorted([("sent", None)] * 4 + [("skipped", ERASED)])
    assert await close_batch(runtime.engine, send.id, 0, SYSTEM_CLOCK.now())


class BuggyChannel:
    """An HTTP-like adapter that fails after the provider may have taken the message."""

    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    provider: ClassVar[str] = "buggy"
    max_concurrency = 4

    async def send(self, message: OutgoingEmail) -> SendResult:
        raise AttributeError("'NoneType' object has no attribute 'json'")

    async def close(self) -> None:
        return None


async def test_an_adapter_bug_records_unknown_and_is_never_retried(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    await add_profiles(sessions, 3, ("en",))
    send = await planned_send(runtime)
    buggy = Sender(sender(runtime, send).composer, BuggyChannel())

    outcome = await send_batch(runtime, buggy, send.id, 0)

    assert (outcome.sent, outcome.failed, outcome.retry) == (0, 3, 0)
    async with sessions() as session:
        rows = (await session.execute(select(Delivery.status, Delivery.reason, Delivery.error))).all()
    assert {(status, reason) for status, reason, _ in rows} == {("unknown", "adapter_error")}
    assert all("AttributeError" in (error or "") for _, _, error in rows)
    assert sum(r.exc_info is not None for r in caplog.records if r.name == "ecrm.channels.base") == 3


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_batch_counts_its_outcomes_per_channel_in_the_metrics(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 5, ("en", "fa", "th"))
    send = await planned_send(runtime)
    async with sessions.begin() as session:
        await session.execute(delete(Profile).where(Profile.email == emails[0]))
    names = [("ecrm_sends_total", {"channel": "email", "outcome": o}) for o in ("sent", "skipped", "failed")]
    names.append(("ecrm_send_chunk_seconds_count", {"channel": "email"}))
    before = [_sample(name, **labels) for name, labels in names]

    await send_batch(runtime, sender(runtime, send), send.id, 0)

    assert [_sample(name, **labels) - b for (name, labels), b in zip(names, before, strict=True)] == [4, 1, 0, 1]

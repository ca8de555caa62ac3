"""A worker killed outright (no chance to record) leaves at most one chunk in doubt; the next
attempt fails that chunk as "interrupted" instead of resending it, and sends all the rest."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run, plan_run
from ecrm.campaigns.load import load_campaign
from ecrm.deliveries.jobs import composer_for
from ecrm.deliveries.models import Delivery
from ecrm.deliveries.send import CLAIM_CHUNK, INTERRUPTED, claim, read_batch, send_batch
from ecrm.runtime import open_runtime
from ecrm.settings import Settings
from ecrm.worker import in_process_queue
from tests.conftest import ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer


async def test_a_hard_crash_leaves_one_chunk_in_doubt_and_the_retry_sends_the_rest_once(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    settings = send_settings.model_copy(update={"send": send_settings.send.model_copy(update={"batch_size": 1000})})
    emails = await add_profiles(sessions, CLAIM_CHUNK + 50, ("en", "fa", "th"))
    runtime = open_runtime(settings, in_process_queue(settings))
    try:
        spec = load_campaign(ROOT / "campaigns" / "welcome.yaml", settings)
        run = await create_run(runtime.sessions, spec, "welcome.yaml")
        await plan_run(runtime, run.run_id)  # the in-process queue is not joined: nothing is sent yet
        async with runtime.sessions.begin() as session:  # a first attempt claims its first chunk, then dies
            first = (await read_batch(session, run.run_id, 0))[:CLAIM_CHUNK]
            assert len(await claim(session, [r.delivery_id for r in first])) == CLAIM_CHUNK

        outcome = await send_batch(runtime, await composer_for(runtime, run.run_id), run.run_id, 0)
    finally:
        await runtime.close()

    assert (outcome.sent, outcome.failed, outcome.retry) == (50, 0, 0)
    doubtful = {r.email for r in first}
    assert smtp.handler.per_recipient() == {e: 1 for e in emails if e not in doubtful}
    async with sessions() as session:
        rows = (await session.execute(select(Delivery.status, Delivery.error))).all()
    assert sorted(rows) == sorted([("failed", INTERRUPTED)] * CLAIM_CHUNK + [("sent", None)] * 50)

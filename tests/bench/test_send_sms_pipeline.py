"""The SMS benchmark's pipeline on a small N: seeded profiles with phones, two arq workers on
real Redis, the local Twilio peer. Exactly one message per number, each delivery sent with its
sid and parts. (Speed is a benchmark figure, not a test.)"""

from __future__ import annotations

from arq import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.send_sms import CAMPAIGN, bench_phone, seed_sms
from ecrm.deliveries.models import Delivery
from ecrm.peers.twilio_sink import TwilioSink
from ecrm.settings import Settings
from tests.twilio import sms_settings
from tests.workers import launch_on_arq, with_redis, work_until_idle

N = 600


async def test_two_workers_text_each_of_600_numbers_exactly_once(
    db_url: str, settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: ArqRedis
) -> None:
    await seed_sms(db_url, N)
    sink = TwilioSink(keep=False)
    port = await sink.start()
    settings = with_redis(sms_settings(settings, port, connections=8), batch_size=150)
    try:
        await launch_on_arq(settings, redis, sessions, CAMPAIGN)
        await work_until_idle(settings, 2)
    finally:
        await sink.close()
    async with sessions() as session:
        rows = (await session.execute(select(Delivery.status, Delivery.provider_message_id, Delivery.parts))).all()

    assert sink.per_recipient == dict.fromkeys((bench_phone(i) for i in range(N)), 1)
    assert len(rows) == N and {status for status, _, _ in rows} == {"sent"}
    assert len({sid for _, sid, _ in rows}) == N and {parts for _, _, parts in rows} <= {1, 2}

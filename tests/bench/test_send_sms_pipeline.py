"""The SMS benchmark's pipeline on a small N: seeded profiles with phones, two arq workers on
real Redis, the local Twilio peer. Exactly one message per number, each delivery sent with its
sid and parts. (Speed is a benchmark figure, not a test.)"""

from __future__ import annotations

from arq import ArqRedis
from pydantic import SecretStr
from sqlalchemy import select

from bench.send_sms import CAMPAIGN, bench_phone, seed_sms
from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.models import Delivery
from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN, TwilioSink
from ecrm.queue import ArqQueue
from ecrm.settings import Settings
from tests.bench.test_send_pipeline import run_workers
from tests.conftest import REDIS_URL

N = 600


async def test_two_workers_text_each_of_600_numbers_exactly_once(db_url: str, settings: Settings,
                                                                 redis: ArqRedis) -> None:
    await seed_sms(db_url, N)
    sink = TwilioSink(keep=False)
    port = await sink.start()
    settings = settings.model_copy(update={
        "redis_url": REDIS_URL, "public_url": "https://crm.shop.example",
        "twilio": settings.twilio.model_copy(update={
            "account_sid": ACCOUNT_SID, "auth_token": SecretStr(AUTH_TOKEN), "from_number": "+15005550006",
            "api_url": f"http://127.0.0.1:{port}", "connections": 8}),
        "send": settings.send.model_copy(update={"batch_size": 150}),
    })
    engine = create_engine(db_url)
    try:
        spec = load_campaign(CAMPAIGN, settings)
        await enqueue_plan(ArqQueue(redis), await create_run(session_factory(engine), spec, str(CAMPAIGN)), spec)
        await run_workers(settings, 2)
        async with session_factory(engine)() as session:
            rows = (await session.execute(select(Delivery.status, Delivery.provider_message_id, Delivery.parts))).all()
    finally:
        await sink.close()
        await engine.dispose()

    assert sink.per_recipient == dict.fromkeys((bench_phone(i) for i in range(N)), 1)
    assert len(rows) == N and {status for status, _, _ in rows} == {"sent"}
    assert len({sid for _, sid, _ in rows}) == N and {parts for _, _, parts in rows} <= {1, 2}

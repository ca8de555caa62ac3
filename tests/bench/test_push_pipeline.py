"""The push benchmark's pieces on a small N: its seed through two arq workers on real Redis to
the local push service, which decrypts every body (one per subscription, each the campaign's
notification); and its raw ceiling, which must deliver each pre-built request once."""

from __future__ import annotations

from pathlib import Path

from arq import ArqRedis
from pydantic import SecretStr
from sqlalchemy import func, select

from bench.peers import PushServiceProcess
from bench.push import CAMPAIGN, browser, measure_ceiling, push_tally, seed
from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.models import Delivery
from ecrm.peers.push_service import BrowserSubscription, PushService
from ecrm.push import vapid
from ecrm.queue import ArqQueue
from ecrm.settings import Settings
from tests.bench.test_send_pipeline import run_workers
from tests.conftest import REDIS_URL

N = 600


async def test_two_workers_push_each_of_600_subscriptions_exactly_one_notification(
    db_url: str, settings: Settings, redis: ArqRedis
) -> None:
    service = PushService()
    await service.start()
    for i in range(N):
        key, auth = browser(i)
        service.subscriptions[i] = BrowserSubscription(i, f"{service.origin}/push/{i}", key, auth)
    await seed(db_url, N, service.origin)
    keys = vapid.new_key_pair()
    push = {"vapid_public_key": keys.public_key, "vapid_private_key": SecretStr(keys.private_key),
            "subject": "mailto:bench@shop.example", "connections": 8}
    settings = settings.model_copy(update={"redis_url": REDIS_URL, "push": settings.push.model_copy(update=push),
                                           "send": settings.send.model_copy(update={"batch_size": 150})})
    engine = create_engine(db_url)
    try:
        spec = load_campaign(CAMPAIGN, settings)
        await enqueue_plan(ArqQueue(redis), await create_run(session_factory(engine), spec, str(CAMPAIGN)), spec)
        await run_workers(settings, 2)
        async with session_factory(engine)() as session:
            sent = await session.scalar(select(func.count()).where(Delivery.status == "sent"))
    finally:
        await service.close()
        await engine.dispose()

    assert service.refused == []
    assert dict(service.per_endpoint) == dict.fromkeys(range(N), 1) and sent == N
    titles = {r.json()["title"] for r in service.received}
    assert titles == {"Back in stock, Emma!", "سارا عزیز، دوباره موجود شد!"}


def test_the_raw_ceiling_delivers_each_prebuilt_request_once(tmp_path: Path) -> None:
    service = PushServiceProcess(tmp_path / "raw.json")
    try:
        result = measure_ceiling(400, 2, 4, service.origin, vapid.new_key_pair())
    finally:
        stats = service.stop()
    assert (result.messages, result.errors) == (400, 0)
    assert push_tally(stats, 400) == (0, 0) and stats["refused"] == 0

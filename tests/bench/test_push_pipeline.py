"""The push benchmark's pieces on a small N: its seed through two arq workers on real Redis to
the local push service, which decrypts every body (one per subscription, each the campaign's
notification); and its raw ceiling, which must deliver each pre-built request once."""

from __future__ import annotations

from pathlib import Path

from arq import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.peers import PushServiceProcess
from bench.push import CAMPAIGN, SUBJECT, browser, measure_ceiling, push_tally, seed
from ecrm.deliveries.models import Delivery
from ecrm.peers.push_service import BrowserSubscription, PushService
from ecrm.push import vapid
from ecrm.settings import Settings
from tests.webpush import service, with_push
from tests.workers import launch_on_arq, with_redis, work_until_idle

__all__ = ["service"]  # the fixture
N = 600


async def test_two_workers_push_each_of_600_subscriptions_exactly_one_notification(
    db_url: str, settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: ArqRedis,
    service: PushService
) -> None:
    for i in range(N):
        key, auth = browser(i)
        service.subscriptions[i] = BrowserSubscription(i, f"{service.origin}/push/{i}", key, auth)
    await seed(db_url, N, service.origin)
    settings = with_redis(with_push(settings, subject=SUBJECT, connections=8), batch_size=150)
    await launch_on_arq(settings, redis, sessions, CAMPAIGN)
    await work_until_idle(settings, 2)
    async with sessions() as session:
        sent = await session.scalar(select(func.count()).where(Delivery.status == "sent"))

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

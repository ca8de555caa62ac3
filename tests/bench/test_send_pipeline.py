"""The benchmark's pipeline on a small N: seeded profiles, two arq workers on real Redis, the
lean sink capturing every message. Exactly one message per recipient, every message parses,
and the delivery rows match what the sink received. (Speed is a benchmark figure, not a test.)"""

from __future__ import annotations

import asyncio
from email import policy
from email.parser import BytesParser
from pathlib import Path

from arq import ArqRedis
from sqlalchemy import func, select

from bench.send import CAMPAIGN, bench_address, seed
from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.models import Delivery
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.queue import ArqQueue
from ecrm.settings import Settings
from ecrm.worker import make_worker
from tests.conftest import REDIS_URL

N = 2000


async def run_workers(settings: Settings, count: int) -> None:
    workers = [make_worker(settings, burst=True, poll_delay=0, handle_signals=False) for _ in range(count)]
    try:
        await asyncio.gather(*(worker.main() for worker in workers))
    finally:
        for worker in workers:
            await worker.close()


async def test_two_workers_send_each_of_2000_recipients_exactly_one_parseable_message(
    db_url: str, settings: Settings, tmp_path: Path, redis: ArqRedis
) -> None:
    await seed(db_url, N)
    sink = SmtpSink(capture=tmp_path / "mail")
    port = await sink.start()
    settings = settings.model_copy(update={
        "redis_url": REDIS_URL,
        "smtp": settings.smtp.model_copy(update={"port": port, "connections": 4}),
        "send": settings.send.model_copy(update={"batch_size": 150}),
    })
    engine = create_engine(db_url)
    try:
        spec = load_campaign(CAMPAIGN, settings)
        await enqueue_plan(ArqQueue(redis), await create_run(session_factory(engine), spec, str(CAMPAIGN)), spec)
        await run_workers(settings, 2)
        async with session_factory(engine)() as session:
            sent = await session.scalar(select(func.count()).where(Delivery.status == "sent"))
    finally:
        await sink.close()
        await engine.dispose()

    assert sink.per_recipient == dict.fromkeys((bench_address(i) for i in range(N)), 1)
    assert sent == sink.messages == N
    parser = BytesParser(policy=policy.default)
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == N
    for path in files:
        message = parser.parsebytes(path.read_bytes())
        assert message.defects == [] and message["Subject"] and message["Message-ID"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None

"""The benchmark's pipeline on a small N: seeded profiles, two arq workers on real Redis, the
lean sink capturing every message. Exactly one message per recipient, every message parses,
and the delivery rows match what the sink received. (Speed is a benchmark figure, not a test.)"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

from arq import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.send import CAMPAIGN, bench_address, seed
from ecrm.deliveries.models import Delivery
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.settings import Settings
from tests.workers import launch_on_arq, with_redis, work_until_idle

N = 2000


async def test_two_workers_send_each_of_2000_recipients_exactly_one_parseable_message(
    db_url: str, settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path, redis: ArqRedis
) -> None:
    await seed(db_url, N)
    sink = SmtpSink(capture=tmp_path / "mail")
    port = await sink.start()
    smtp = settings.smtp.model_copy(update={"port": port, "connections": 4})
    settings = with_redis(settings.model_copy(update={"smtp": smtp}), batch_size=150)
    try:
        await launch_on_arq(settings, redis, sessions, CAMPAIGN)
        await work_until_idle(settings, 2)
    finally:
        await sink.close()
    async with sessions() as session:
        sent = await session.scalar(select(func.count()).where(Delivery.status == "sent"))

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

"""Where the database and the queue spend their time: each stage of the send path on its own.

    python -m bench.stages [-n 20000] [--batch 1000]

On a fresh PostgreSQL database with N seeded profiles, it runs the send path's database and
queue work stage by stage through the runtime's `BatchStore` (asyncpg on PostgreSQL), without
rendering or SMTP, and prints for each the client CPU,
the PostgreSQL CPU (all its processes) and Redis CPU in µs per message:

- segment query: the campaign's audience streamed through a server-side cursor;
- plan: the same stream plus one `INSERT ... SELECT` per batch (queued deliveries);
- queue: one arq job enqueued per batch on real Redis;
- read: per batch, take the batch over, read its queued recipients, mark the first chunk;
- record: per chunk, write every outcome (as sent, with a real-length Message-ID) and mark the
  next chunk, as a send job does;
- close: per batch, close it and check whether the run is done.

Then how many of the deliveries' updates were HOT (the new row version on the same page, no
index written), from PostgreSQL's statistics once the connections are closed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from sqlalchemy import text

from bench.send import CAMPAIGN, REDIS_URL, ROOT, cpu_since, fresh_postgres, seed, server_cpu
from ecrm import loop
from ecrm.campaigns.launch import create_run, plan_run
from ecrm.campaigns.load import load_campaign
from ecrm.channels.base import SendResult
from ecrm.db import create_engine
from ecrm.deliveries.batch_store import span
from ecrm.deliveries.claims import Owner
from ecrm.deliveries.send import CLAIM_CHUNK, change_for
from ecrm.queue import ArqQueue
from ecrm.render.message_id import MessageIds
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime, open_runtime
from ecrm.segments.compile import compile_audience
from ecrm.segments.stream import stream_members
from ecrm.settings import load_settings


class NoQueue:
    """Planning without sending: every job is accepted and dropped."""

    async def enqueue(self, function: str, *args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool:
        return True


@dataclass
class Stage:
    name: str
    client_us: float
    postgres_us: float
    redis_us: float
    seconds: float

    def line(self) -> str:
        return (f"{self.name:14} client {self.client_us:6.1f} µs/msg   postgres {self.postgres_us:6.1f} µs/msg   "
                f"redis {self.redis_us:5.1f} µs/msg   ({self.seconds:.2f} s)")


async def timed(name: str, n: int, work: Callable[[], Awaitable[None]]) -> Stage:
    servers = {name: server_cpu(name) for name in ("postgres", "redis-server")}
    cpu, started = time.process_time(), time.perf_counter()
    await work()
    seconds, client = time.perf_counter() - started, time.process_time() - cpu
    per = 1e6 / n
    return Stage(name, client * per, cpu_since("postgres", servers["postgres"]) * per,
                 cpu_since("redis-server", servers["redis-server"]) * per, seconds)


async def run(n: int, batch_size: int) -> tuple[list[Stage], tuple[int, int]]:
    url = await fresh_postgres("ecrm_bench_stages")
    await seed(url, n)
    settings = load_settings(Path("/nonexistent"), environ={}, database_url=url, templates_dir=ROOT / "templates",
                             send={"batch_size": batch_size})
    runtime = open_runtime(settings, NoQueue())
    try:
        stages = await _stages(runtime, n, batch_size)
    finally:
        await runtime.close()  # backends exit and flush their statistics
    return stages, await updates(url)


async def updates(url: str) -> tuple[int, int]:
    """(updates, HOT updates) of the deliveries table."""
    engine = create_engine(url)
    async with engine.connect() as connection:
        row = (await connection.execute(text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"))).one()
    await engine.dispose()
    return int(row[0]), int(row[1])


class Stages:
    """The send path's database and queue work for one planned run, one method per stage."""

    def __init__(self, runtime: Runtime, run_id: int, batches: int, batch_size: int) -> None:
        self.runtime, self.run_id, self.batches, self.batch_size = runtime, run_id, batches, batch_size
        self.spec = load_campaign(CAMPAIGN, runtime.settings)
        self.owners: dict[int, Owner] = {}
        self.message_ids = MessageIds(runtime.settings.secret_key, runtime.settings.email.message_id_domain)
        self.recipients: dict[int, list[Recipient]] = {}

    async def segment(self) -> None:
        query = compile_audience(self.spec.audience, self.spec.kind, self.runtime.clock.now())
        async for _ in stream_members(self.runtime.sessions, query, self.batch_size):
            pass

    async def plan(self) -> None:
        assert await plan_run(self.runtime, self.run_id) == self.batches

    async def queue(self) -> None:
        redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
        await redis.flushdb()
        for batch in range(self.batches):
            await ArqQueue(redis).enqueue("send_batch", self.run_id, batch, _job_id=f"stages:{batch}")
        await redis.flushdb()
        await redis.aclose()

    async def read(self) -> None:
        for batch in range(self.batches):
            started = await self.runtime.batches.start(self.run_id, batch, CLAIM_CHUNK)
            self.owners[batch], self.recipients[batch] = started.owner, started.recipients

    async def record(self) -> None:
        for batch, queued in self.recipients.items():
            chunks = [queued[i : i + CLAIM_CHUNK] for i in range(0, len(queued), CLAIM_CHUNK)]
            for index, chunk in enumerate(chunks):
                following = chunks[index + 1] if index + 1 < len(chunks) else None
                changes = [change_for(r.delivery_id, SendResult("smtp", self.message_ids.make(r.delivery_id)))
                           for r in chunk]
                assert await self.runtime.batches.record(self.owners[batch], changes, span(following))

    async def close(self) -> None:
        for batch in range(self.batches):
            await self.runtime.batches.close(self.run_id, batch)


async def _stages(runtime: Runtime, n: int, batch_size: int) -> list[Stage]:
    spec = load_campaign(CAMPAIGN, runtime.settings)
    run_ref = await create_run(runtime.sessions, spec, str(CAMPAIGN))
    stages = Stages(runtime, run_ref.run_id, (n + batch_size - 1) // batch_size, batch_size)
    return [await timed(name, n, getattr(stages, name.split()[0]))
            for name in ("segment query", "plan", "queue", "read", "record", "close")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    stages, (updated, hot) = loop.run(run(args.n, args.batch))
    print(f"{args.n} messages in batches of {args.batch}, chunks of {CLAIM_CHUNK}, PostgreSQL:")
    for stage in stages:
        print(stage.line())
    total = [sum(getattr(s, f) for s in stages if s.name != "segment query") for f in ("client_us", "postgres_us")]
    print(f"{'all but segment':14} client {total[0]:6.1f} µs/msg   postgres {total[1]:6.1f} µs/msg "
          "(plan includes the segment query)")
    print(f"deliveries: {hot} of {updated} updates HOT ({100 * hot / max(updated, 1):.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Transactional message latency while a campaign sends: from `POST /v1/messages` to the
message's arrival at the local SMTP sink.

    python -m bench.messages [-n 20000] [--messages 100] [--rate 20] [--campaign-workers 1]
        [--database ecrm_bench_messages] [--campaign-nice N]

On a fresh PostgreSQL database (`--database`, cloned from `seed_<n>_<messages>_<database>`, which the
first run with that `-n` seeds) with Redis (database 11, or BENCH_MESSAGES_REDIS_URL): `-n`
profiles get the welcome campaign (arq, `--campaign-workers` `ecrm worker` processes) while
`--messages` transactional messages are posted, `--rate` per second, to `ecrm serve` and sent
by one `ecrm worker --transactional`. The sink (in this process) notes when each message
arrives. It prints the messages' latency p50, p99 and max, how many campaign emails arrived
meanwhile (and their rate), the ratio of p99 to the issue's 100 ms, how long the 202 itself
took, and the stages of each message's way, from arq's job record: accept (post to enqueue:
HTTP, key, the transaction), pickup (enqueue to the worker starting the job) and send (job
start to the sink: claim, render, SMTP). Every process shares the machine's cores: compare runs
on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.jobs import Job

from bench.send import CAMPAIGN, PG_ADMIN, ROOT, fresh_postgres, seed, settings_env
from ecrm.api.apikeys import create_api_key
from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, session_factory
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.profiles.models import Profile
from ecrm.queue import TRANSACTIONAL_QUEUE, ArqQueue
from ecrm.settings import Settings, load_settings

# its own Redis database: bench.send (14) and the tests (15) flush theirs
REDIS_URL = os.environ.get("BENCH_MESSAGES_REDIS_URL", "redis://127.0.0.1:6379/11")
TARGET_P99 = 0.100
TX_DOMAIN = "@tx.example"


class TimingSink(SmtpSink):
    """The lean sink, noting when each transactional recipient's message arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}  # time.time(), comparable with arq's job times

    def deliver(self, recipients: list[str], size: int, body: Callable[[], bytes]) -> bytes:
        for address in recipients:
            if address.endswith(TX_DOMAIN):
                self.arrived[address] = time.time()
        return super().deliver(recipients, size, body)


def templates_with_receipt(work: Path) -> Path:
    root = work / "templates"
    shutil.copytree(ROOT / "templates", root)
    receipt = root / "receipt"
    receipt.mkdir()
    (receipt / "template.yaml").write_text("transactional: true\n")
    (receipt / "subject.txt").write_text("Your order {{ data.order_id }}\n")
    (receipt / "body.txt").write_text("Hi {{ profile.first_name }}, we received order {{ data.order_id }}.\n")
    (receipt / "body.html").write_text("<p>We received order {{ data.order_id }}.</p>\n")
    return root


async def prepare(name: str, n: int, messages: int) -> tuple[str, str]:
    """The fresh database's URL and an API key for it: a copy of `seed_<n>_<messages>_<name>`,
    seeded first if it does not exist yet (seeding 100,000 profiles takes longer than a run)."""
    template = f"seed_{n}_{messages}_{name}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
            await seed_template(await fresh_postgres(f"new_{template}"), n, messages)
            await admin.execute(f'ALTER DATABASE "new_{template}" RENAME TO "{template}"')
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    await migrate(engine)  # a template seeded before newer migrations is brought up to date
    async with session_factory(engine).begin() as session:
        key = await create_api_key(session, "bench", SYSTEM_CLOCK.now())
    await engine.dispose()
    return url, key


async def seed_template(url: str, n: int, messages: int) -> None:
    await seed(url, n)
    engine = create_engine(url)
    now = SYSTEM_CLOCK.now()
    async with session_factory(engine).begin() as session:
        session.add_all(Profile(external_id=f"tx{i}", email=f"tx{i}{TX_DOMAIN}", first_name="Tom", traits={},
                                created_at=now, updated_at=now) for i in range(messages))
    await engine.dispose()


def start(command: list[str], settings: Settings, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ecrm", "-v", *command], env={**settings_env(settings), **env},
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def post_messages(base: str, key: str, args: argparse.Namespace) -> tuple[dict[str, float], list[float]]:
    """Post the messages at `--rate` per second, each on its schedule whether or not the ones
    before were answered (open loop: a slower API does not lower the load); when each was posted,
    by address, and how long each request took (accepted: 202)."""
    posted: dict[str, float] = {}
    answered: list[float] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

        async def post(i: int) -> None:
            body = {"template": "receipt", "external_id": f"tx{i}", "data": {"order_id": f"#{i}"}}
            posted[f"tx{i}{TX_DOMAIN}"] = time.time()
            async with http.post(f"{base}/v1/messages", json=body, headers={"Idempotency-Key": f"b-{i}"}) as resp:
                if resp.status != 202:
                    raise SystemExit(f"message {i}: {resp.status} {await resp.text()}")
            answered.append(time.time() - posted[f"tx{i}{TX_DOMAIN}"])

        start, tasks = time.perf_counter(), []
        for i in range(args.messages):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
    return posted, answered


async def run(args: argparse.Namespace, work: Path) -> None:
    url, key = await prepare(args.database, args.n, args.messages)
    sink = TimingSink()
    port = await sink.start()
    settings = load_settings(Path("/nonexistent"), environ={}, database_url=url, redis_url=REDIS_URL,
                             templates_dir=templates_with_receipt(work), smtp={"port": port, "connections": 8})
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    await redis.flushdb()
    env = {f"ECRM_{name.upper()}": value for name, value in args.env}
    if args.campaign_nice is not None:
        env["ECRM_SEND__CAMPAIGN_NICE"] = str(args.campaign_nice)
    processes = [start(["worker", "--dev"], settings, work / f"worker{i}.log", env)
                 for i in range(args.campaign_workers)]
    processes.append(start(["worker", "--dev", "--transactional"], settings, work / "transactional.log", env))
    processes.append(start(["serve", "--dev", "--port", str(args.port)], settings, work / "serve.log", env))
    try:
        base = f"http://127.0.0.1:{args.port}"
        await wait_up(base, 120)
        engine = create_engine(url)
        spec = load_campaign(CAMPAIGN, settings)
        ref = await create_run(session_factory(engine), spec, str(CAMPAIGN))
        await engine.dispose()
        await enqueue_plan(ArqQueue(redis), ref, spec)
        async with asyncio.timeout(120):
            await until(lambda: sink.messages >= min(1000, args.n // 10))  # the campaign is sending
            while not await redis.exists(f"{TRANSACTIONAL_QUEUE}:health-check"):  # noqa: ASYNC110  # its worker has started
                await asyncio.sleep(0.05)
        campaign_before, began = sink.messages, time.perf_counter()
        posted, answered = await post_messages(base, key, args)
        async with asyncio.timeout(60):
            await until(lambda: len(sink.arrived) >= args.messages)
        campaign, took = sink.messages - campaign_before - args.messages, time.perf_counter() - began
        report(args, [sink.arrived[address] - at for address, at in posted.items()], answered, campaign, took)
        report_stages(await stages(url, redis, posted, sink.arrived))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        await redis.aclose()
        await sink.close()


async def wait_up(base: str, seconds: float) -> None:
    """Until `ecrm serve` answers /health (slow to start on a busy machine)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(seconds):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)


async def until(condition: Callable[[], bool]) -> None:
    """Poll the in-process sink's counters (it has no events to wait on)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def p99_of(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def stages(url: str, redis: ArqRedis, posted: dict[str, float],
                 arrived: dict[str, float]) -> dict[str, list[float]]:
    """Each message's accept, pickup and send times (seconds), from arq's record of its job."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        sends = {f"tx{row['idempotency_key'][2:]}{TX_DOMAIN}": row["send_id"] for row in await connection.fetch(
            "SELECT idempotency_key, send_id FROM transactional_messages")}
    finally:
        await connection.close()
    found: dict[str, list[float]] = {"accept": [], "pickup": [], "send": []}
    for address, at in posted.items():
        result = await Job(f"send:{sends[address]}:0:1", redis, _queue_name=TRANSACTIONAL_QUEUE).result_info()
        if result is None:
            continue
        enqueued, started = result.enqueue_time.timestamp(), result.start_time.timestamp()
        found["accept"].append(enqueued - at)
        found["pickup"].append(started - enqueued)
        found["send"].append(arrived[address] - started)
    return found


def report_stages(found: dict[str, list[float]]) -> None:
    print("stages (ms, arq's times are whole ms): " + "; ".join(
        f"{name} p50 {statistics.median(values) * 1000:.1f} p99 {p99_of(values) * 1000:.1f} "
        f"max {max(values) * 1000:.1f}" for name, values in found.items() if len(values) > 1))


def report(args: argparse.Namespace, latencies: list[float], answered: list[float], campaign: int,
           took: float) -> None:
    p99 = p99_of(latencies)
    print(f"{len(latencies)} messages at {args.rate}/s while the campaign sent {campaign} of {args.n} "
          f"({campaign / took:.0f} msg/s): latency "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms; p99 / {TARGET_P99 * 1000:.0f} ms = {p99 / TARGET_P99:.2f}; "
          f"the 202 itself p50 {statistics.median(answered) * 1000:.0f} ms, p99 {p99_of(answered) * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="campaign recipients")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="messages posted per second")
    parser.add_argument("--campaign-workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument("--database", default="ecrm_bench_messages", help="PostgreSQL database to (re)create")
    parser.add_argument("--campaign-nice", type=int, help="send.campaign_nice for the campaign workers")
    parser.add_argument("--env", nargs=2, action="append", default=[], metavar=("SETTING", "VALUE"),
                        help="another setting for every process, e.g. --env send__campaign_nice 10")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ecrm-bench-messages-"))
    asyncio.run(run(args, work))
    if args.keep:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Segment benchmark: counts, streamed reads, memory and entry/exit latency over a shop's data.

    python -m bench.segments [--profiles 1000000] [--events 10000000] [--orders 1000000]
                             [--sqlite-profiles 100000] [--db postgresql sqlite] [--reload] [--explain] [--arq]
                             [--no-refresh]

Loads the data once (`bench.segment_data`: PostgreSQL with COPY into the database
`ecrm_bench_segments` on BENCH_PG_URL's server; SQLite with executemany into a file in the
temporary directory, `--sqlite-profiles` profiles with events and orders in the same
proportions) and keeps it: a later run with the same sizes skips the load (`--reload` forces
it). Then, for each segment file in `bench/segment_files/` (attribute only, event window, did
not, sequence, RFM, nested with a named segment), at the data's own instant:

- count: the best of `--repeat` runs of `SELECT count(*)` over the segment's query; a segment
  with RFM rules first stores a new ranking (`ecrm.segments.rankings`, timed) and counts from
  it, then once more ranking in the query (timed too; both counts must agree);
- stream: a full read of the members through a server-side cursor in batches of 5,000, its
  time scaled to 100,000 members, and the process's RSS before and at its peak while reading;
- refresh: the scheduled refresh of the whole segment (`refresh_segment`), first with every
  member entering (and a `segment_entered` event each), then again with nothing to change;
- a file the rule language cannot read yet is reported as `not supported yet` with why.

Last, entry/exit latency: for 20 profiles, one event (`bench_probe`) is recorded and committed, and the
profile's membership of every supported segment refreshed (`refresh_touched`, what the
`segments_touched` job does), timed from the commit to the entry/exit events committed; with
`--arq`, also from enqueueing the job on Redis to its result from an arq worker (which polls
its queue every 10 ms, as `ecrm worker --transactional`, whose queue the API puts it on, does).

Targets (2 cores): a count under 2 s, a 100,000-member streamed read under 3 s, memory flat
while streaming, entry/exit for one event under 50 ms. What a run writes (memberships, their
events, the probes) is removed at its end, so the loaded data stays as loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import psutil
from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.segment_data import Dataset, copy_postgres, insert_sqlite
from bench.send import PG_ADMIN, REDIS_URL
from ecrm import loop
from ecrm.db import create_engine, migrate, session_factory
from ecrm.errors import SpecError
from ecrm.profiles.ingest import EventIn, record_event
from ecrm.profiles.models import Event
from ecrm.segments.inspect import count_members, explain_plan
from ecrm.segments.jobs import touchable
from ecrm.segments.library import NamedSegment, find_segment
from ecrm.segments.members import member_query
from ecrm.segments.models import SegmentMember
from ecrm.segments.rankings import ranked
from ecrm.segments.refresh import SEGMENT_ENTERED, SEGMENT_EXITED, refresh_segment, refresh_touched
from ecrm.segments.stream import stream_members
from ecrm.settings import load_settings

SEGMENTS = Path(__file__).resolve().parent / "segment_files"
ORDER = ("attribute", "event_window", "did_not", "sequence", "rfm", "nested")
DATABASE = "ecrm_bench_segments"
DEFAULT_SQLITE_FILE = Path(tempfile.gettempdir()) / "ecrm-bench-segments.db"
BATCH = 5000
PROBE = "bench_probe"  # the incoming event of the latency measure, removed after the run
MIN_SCALED = 10_000  # fewer members than this: the fixed cost of a query swamps the per-row one
COUNT_TARGET, STREAM_TARGET, LATENCY_TARGET = 2.0, 3.0, 0.050  # seconds; stream per 100,000 members


@dataclass
class Figures:
    name: str
    problem: str | None = None
    members: int = 0
    count_s: float = 0.0
    stream_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    first_refresh_s: float | None = None  # None: not run (--no-refresh)
    refresh_s: float = 0.0
    rank_s: float | None = None  # RFM: storing the ranking (None: the segment ranks nothing)
    inline_count_s: float = 0.0  # RFM: the count ranking in the query instead

    def line(self) -> str:
        if self.problem is not None:
            return f"  {self.name:13} not supported yet: {self.problem}"
        per_100k = self.stream_s * 100_000 / self.members if self.members else 0.0
        scaled = (f"{per_100k:5.2f} s per 100k ({per_100k / STREAM_TARGET:4.2f} of {STREAM_TARGET:.0f} s)"
                  if self.members >= MIN_SCALED else "too few members to scale to 100k")
        figures = (f"  {self.name:13} {self.members:>10,} members  count {self.count_s:6.3f} s "
                   f"({self.count_s / COUNT_TARGET:4.2f} of {COUNT_TARGET:.0f} s)  stream {self.stream_s:6.2f} s, "
                   f"{scaled}  RSS {self.rss_before_mb:.0f} -> peak {self.rss_peak_mb:.0f} MB")
        if self.rank_s is not None:
            figures += (f"\n  {'':13} count read from the stored RFM ranking; storing it took {self.rank_s:6.2f} s "
                        f"(redone every segment_rank_minutes); ranked in the query the count takes "
                        f"{self.inline_count_s:6.2f} s")
        if self.first_refresh_s is None:
            return figures
        return (f"{figures}\n  {'':13} scheduled refresh: first (everyone enters) {self.first_refresh_s:6.2f} s, "
                f"then with nothing to change {self.refresh_s:6.3f} s")


def load_segments() -> list[NamedSegment | tuple[str, str]]:
    """Each bench segment, or (name, the first problem) when the rule language refuses it."""
    found: list[NamedSegment | tuple[str, str]] = []
    for name in ORDER:
        try:
            found.append(find_segment(name, SEGMENTS))
        except SpecError as exc:
            found.append((name, str(exc.problems[0]).replace(str(SEGMENTS) + "/", "")))
    return found


async def prepare_postgres(data: Dataset, reload: bool) -> str:
    """The bench database with `data` in it, loaded only when it holds something else."""
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
    finally:
        await admin.close()
    url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{DATABASE}"
    raw = url.replace("postgresql+asyncpg://", "postgresql://")
    if exists and not reload and await _loaded_key(raw) == data.key():
        print(f"postgresql: {DATABASE} already holds this data; loading skipped (--reload to load again)")
        await _migrate(url)  # tables added since the load (the data stays)
        return url
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    await _migrate(url)
    started = time.perf_counter()
    conn = await asyncpg.connect(raw)
    try:
        await copy_postgres(conn, data)
        await _mark_loaded(conn, data)
    finally:
        await conn.close()
    _say_loaded("postgresql (COPY)", data, time.perf_counter() - started)
    return url


async def _loaded_key(raw_url: str) -> str | None:
    conn = await asyncpg.connect(raw_url)
    try:
        return str(await conn.fetchval("SELECT key FROM bench_dataset")) or None
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()


async def _mark_loaded(conn: asyncpg.Connection, data: Dataset) -> None:
    await conn.execute("CREATE TABLE bench_dataset (key text NOT NULL)")
    await conn.execute("INSERT INTO bench_dataset VALUES ($1)", data.key())


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def _say_loaded(where: str, data: Dataset, seconds: float) -> None:
    rows = data.profiles + data.events + data.orders
    print(f"{where}: loaded {data.profiles:,} profiles, {data.events:,} events, {data.orders:,} orders "
          f"in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")


async def prepare_sqlite(data: Dataset, reload: bool, path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    if not reload and await asyncio.to_thread(_sqlite_holds, data, path):
        print(f"sqlite: {path} already holds this data; loading skipped (--reload to load again)")
        await _migrate(url)
        return url
    await asyncio.to_thread(_sqlite_remove, path)
    await _migrate(url)
    started = time.perf_counter()
    await asyncio.to_thread(_sqlite_load, data, path)
    _say_loaded("sqlite (executemany)", data, time.perf_counter() - started)
    return url


def _sqlite_holds(data: Dataset, path: Path) -> bool:
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        try:
            key = db.execute("SELECT key FROM bench_dataset").fetchone()
        except sqlite3.Error:
            return False
    return key is not None and key[0] == data.key()


def _sqlite_remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _sqlite_load(data: Dataset, path: Path) -> None:
    insert_sqlite(str(path), data)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE bench_dataset (key text NOT NULL)")
        db.execute("INSERT INTO bench_dataset VALUES (?)", (data.key(),))


class RssPeak:
    """The process's resident memory, sampled every 10 ms while a read runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.now()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        return float(self.process.memory_info().rss) / 2**20

    async def __aenter__(self) -> RssPeak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak = max(self.peak, self.now())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            await asyncio.sleep(0.01)


async def measure(engine: AsyncEngine, segment: NamedSegment, data: Dataset, repeat: int,
                  refresh: bool = True) -> Figures:
    sessions = session_factory(engine)
    started = time.perf_counter()
    audience = await ranked(sessions, segment.audience, data.at, timedelta(0))  # a new ranking, timed
    rank_s = time.perf_counter() - started if audience is not segment.audience else None
    query = member_query(audience, data.at)
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        members = await count_members(sessions, query)
        timings.append(time.perf_counter() - started)
    figures = Figures(segment.name, members=members, count_s=min(timings), rank_s=rank_s)
    if rank_s is not None:
        started = time.perf_counter()
        inline = await count_members(sessions, member_query(segment.audience, data.at))
        figures.inline_count_s = time.perf_counter() - started
        assert inline == members, f"{segment.name}: {inline} ranked in the query, {members} from the stored ranking"
    segment = replace(segment, audience=audience)
    rss = RssPeak()
    figures.rss_before_mb = rss.peak
    streamed, started = 0, time.perf_counter()
    async with rss:
        async for ids in stream_members(sessions, query, BATCH):
            streamed += len(ids)
    figures.stream_s, figures.rss_peak_mb = time.perf_counter() - started, rss.peak
    assert streamed == members, f"{segment.name}: streamed {streamed}, counted {members}"
    if not refresh:
        return figures
    figures.first_refresh_s, entered = await _timed_refresh(sessions, segment, data)
    assert entered == members, f"{segment.name}: {entered} entered, {members} members"
    figures.refresh_s, changed = await _timed_refresh(sessions, segment, data)
    assert changed == 0, f"{segment.name}: the second refresh changed {changed}"
    return figures


async def _timed_refresh(sessions: async_sessionmaker[AsyncSession], segment: NamedSegment,
                         data: Dataset) -> tuple[float, int]:
    started = time.perf_counter()
    changes = await refresh_segment(sessions, segment, data.at)
    return time.perf_counter() - started, changes.total


async def forget_runs(engine: AsyncEngine) -> None:
    """Remove what earlier runs wrote (memberships, their events, the latency probes), so every
    run starts from the loaded data."""
    async with engine.begin() as conn:
        await conn.execute(delete(SegmentMember))
        await conn.execute(delete(Event).where(or_(Event.name.in_([SEGMENT_ENTERED, SEGMENT_EXITED]),
                                                   Event.name == PROBE)))


async def entry_exit_latency(engine: AsyncEngine, segments: list[NamedSegment], data: Dataset,
                             samples: int = 20) -> list[float]:
    """Seconds from an event's commit to its profile's entry/exit events committed."""
    sessions = session_factory(engine)
    now = data.at
    seconds = []
    for i in range(samples):
        external_id = f"c{1 + (i * 7919) % data.profiles}"
        async with sessions.begin() as session:
            event = await record_event(session, EventIn(external_id=external_id, name=PROBE), now)
        started = time.perf_counter()
        await refresh_touched(sessions, segments, [event.profile_id], now)
        seconds.append(time.perf_counter() - started)
    return seconds


async def arq_latency(url: str, data: Dataset, samples: int = 20) -> list[float]:
    """Seconds from enqueueing `segments_touched` for a just-committed event's profile (what the
    API does: one script that queues the job and wakes the worker) to its result, through Redis
    and the transactional queue's woken arq worker (`ecrm worker --transactional`, run in this
    process on the bench's own Redis database)."""
    from uuid import uuid4

    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.jobs import Job

    from ecrm.queue import TRANSACTIONAL_QUEUE, ArqQueue
    from ecrm.worker import make_transactional_worker

    logging.getLogger("ecrm.segments.catalog").setLevel(logging.CRITICAL)  # said above: not supported yet
    settings = load_settings(Path("/nonexistent"), environ={}, database_url=url, redis_url=REDIS_URL,
                             segments_dir=SEGMENTS)
    worker = make_transactional_worker(settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    await redis.delete(TRANSACTIONAL_QUEUE)
    queue = ArqQueue(redis, TRANSACTIONAL_QUEUE)
    engine = create_engine(url)
    sessions, seconds, rng = session_factory(engine), [], random.Random(18)
    try:
        for i in range(samples):
            await asyncio.sleep(rng.uniform(0, 0.1))  # events come at any point of the worker's wait
            async with sessions.begin() as session:
                event = await record_event(session, EventIn(external_id=f"c{1 + (i * 104729) % data.profiles}",
                                                            name=PROBE), data.at)
            started, job_id = time.perf_counter(), uuid4().hex
            assert await queue.enqueue("segments_touched", [event.profile_id], _job_id=job_id)
            await Job(job_id, redis, _queue_name=TRANSACTIONAL_QUEUE).result(timeout=10, poll_delay=0.002)
            seconds.append(time.perf_counter() - started)
    finally:
        await worker.close()
        running.cancel()
        await redis.aclose()
        await engine.dispose()
    return seconds


def _latency_line(what: str, seconds: list[float]) -> str:
    p95 = sorted(seconds)[int(0.95 * (len(seconds) - 1))]
    median = statistics.median(seconds)
    return (f"  {what}: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
            f"({median / LATENCY_TARGET:.2f} of {LATENCY_TARGET * 1000:.0f} ms)")


async def run(label: str, url: str, data: Dataset, args: argparse.Namespace) -> None:
    engine = create_engine(url)
    try:
        await forget_runs(engine)
        print(f"\n{label}: {data.profiles:,} profiles, {data.events:,} events, {data.orders:,} orders, "
              f"segments at {data.now}")
        supported = []
        for found in load_segments():
            if isinstance(found, tuple):
                print(Figures(found[0], problem=found[1]).line())
                continue
            supported.append(found)
            print((await measure(engine, found, data, args.repeat, args.refresh)).line(), flush=True)
            if args.explain:
                plan = await explain_plan(session_factory(engine), member_query(found.audience, data.at))
                print("\n".join(f"      {line}" for line in plan or ["(no plan on SQLite)"]))
        touched = touchable(supported)  # what the `segments_touched` job evaluates
        latency = await entry_exit_latency(engine, touched, data)
        print(_latency_line(f"entry/exit for one event ({len(touched)} segment(s); ranked ones wait for the "
                            "scheduled refresh)", latency))
        if args.arq:
            print(_latency_line("  the same through Redis and an arq worker", await arq_latency(url, data)))
        await forget_runs(engine)
    finally:
        await engine.dispose()


async def main_async(args: argparse.Namespace) -> None:
    if "postgresql" in args.db:
        data = Dataset(args.profiles, args.events, args.orders)
        await run("postgresql", await prepare_postgres(data, args.reload), data, args)
    if "sqlite" in args.db and args.sqlite_profiles:
        scale = args.sqlite_profiles / args.profiles
        data = Dataset(args.sqlite_profiles, round(args.events * scale), round(args.orders * scale))
        await run("sqlite", await prepare_sqlite(data, args.reload, args.sqlite_file), data, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=None, help="default: 10 per profile")
    parser.add_argument("--orders", type=int, default=None, help="default: 1 per profile")
    parser.add_argument("--sqlite-profiles", type=int, default=100_000,
                        help="SQLite's size, events and orders in proportion (0: skip SQLite)")
    parser.add_argument("--sqlite-file", type=Path, default=DEFAULT_SQLITE_FILE, help="where SQLite's data is kept")
    parser.add_argument("--db", nargs="+", choices=("postgresql", "sqlite"), default=["postgresql", "sqlite"])
    parser.add_argument("--repeat", type=int, default=3, help="counts per segment (the best is shown)")
    parser.add_argument("--reload", action="store_true", help="load the data even if it is there already")
    parser.add_argument("--arq", action="store_true",
                        help="also time entry/exit through Redis (BENCH_REDIS_URL) and an arq worker")
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plan of each segment")
    parser.add_argument("--no-refresh", dest="refresh", action="store_false",
                        help="skip the scheduled refresh of each whole segment (minutes for the large ones)")
    args = parser.parse_args(argv)
    args.events = 10 * args.profiles if args.events is None else args.events
    args.orders = args.profiles if args.orders is None else args.orders
    return args


def main(argv: list[str] | None = None) -> None:
    loop.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    main()

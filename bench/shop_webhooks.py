"""Signed Shopify order webhooks against `ecrm serve` on PostgreSQL: the acknowledgement path
(rate, latency, CPU per request) and the mapping behind it (webhooks mapped per second until
the backlog is empty, CPU per webhook).

    python -m bench.shop_webhooks [-n 20000] [--concurrency 50] [--workers 2] [--tree PATH]
                                  [--mapping serve|worker|after] [--database NAME] [--profile DIR]

A fresh database (`--database`, default `ecrm_bench_shop`), `ecrm serve --workers N` with a
Shopify secret, then `-n` distinct `orders/create` deliveries (each its own customer and
order, ~3 KB, signed as Shopify signs them) from `--concurrency` clients in this process.
Where the mapping runs:

- `serve`: no Redis; the API maps in its own processes, competing with the acknowledgements;
- `worker`: one `ecrm worker` maps alongside the load, on a Redis database of its own
  (BENCH_REDIS_URL, default /12; it is flushed first: a worker takes every job of its database);
- `after`: Redis configured but no worker during the load, so the API's CPU is the
  acknowledgement path alone; then an `ecrm worker` maps the backlog, so its CPU is the
  mapping alone.

It prints req/s, p50/p99 of the acknowledgements and the CPU milliseconds per request of the
API processes and of the PostgreSQL backends serving its database (not PostgreSQL's shared
WAL writer and checkpointer; a backend that exits meanwhile is missed); then
the mapping: how many were mapped when the load ended, the webhooks mapped per second from
the first mapped one until none is left, and the CPU per webhook of whoever mapped them. It
checks that every acknowledged webhook is stored once and ended up an order (exit 1 otherwise).
`--tree PATH` runs the `ecrm` of another checkout (this client, on the same database server,
to compare before and after). `--profile DIR` records the API (and worker) with py-spy (`pip install py-spy`) into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from arq import create_pool
from arq.connections import RedisSettings

from bench.ingest import cpu_of
from bench.send import fresh_postgres
from tests.shops.payloads import SHOPIFY_SECRET, shopify_customer, shopify_order, shopify_request

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "ecrm_bench_shop"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# a Redis database of its own: a worker takes every job of its database, other benches' too
REDIS_URL = os.environ.get("BENCH_REDIS_URL", os.environ.get("BENCH_SHOP_REDIS_URL", "redis://127.0.0.1:6379/12"))
MODES = ("serve", "worker", "after")


@dataclass
class Cpu:
    """CPU seconds of the processes `lister` names since `of` (those started since count whole)."""

    lister: Callable[[], list[psutil.Process]]
    start: dict[int, float]

    @classmethod
    def of(cls, lister: Callable[[], list[psutil.Process]]) -> Cpu:
        return cls(lister, cpu_of(lister()))

    def seconds(self) -> float:
        return sum(seconds - self.start.get(pid, 0.0) for pid, seconds in cpu_of(self.lister()).items())


def tree_of(pid: int) -> Callable[[], list[psutil.Process]]:
    def lister() -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return lister


def backends(database: str) -> Callable[[], list[psutil.Process]]:
    """PostgreSQL's backends serving `database` (not the server's shared processes, nor other
    databases': the machine's PostgreSQL is shared), as `pg_stat_activity` lists them."""
    def lister() -> list[psutil.Process]:
        query = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"
        pids = subprocess.run(["psql", PG_ADMIN, "-Atc", query], capture_output=True, text=True, check=True).stdout
        found = []
        for pid in pids.split():
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append(psutil.Process(int(pid)))
        return found
    return lister


def deliveries(n: int) -> list[tuple[bytes, dict[str, str]]]:
    return [shopify_request("orders/create", shopify_order(id=10_000 + i, customer=shopify_customer(id=20_000 + i)),
                            f"bench-{i}") for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], env: dict[str, str], log: Path, tree: Path) -> subprocess.Popen[bytes]:
    """`ecrm <command>` of the checkout `tree`."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ecrm", *command], env={**env, "PYTHONPATH": str(tree)},
                                cwd=tree, stdout=out, stderr=subprocess.STDOUT)


def profile(process: subprocess.Popen[bytes], out: Path) -> subprocess.Popen[bytes]:
    py_spy = str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--pid", str(process.pid), "--subprocesses", "--nonblocking",
                             "--rate", "200", "--format", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{url}/health") as response:
                if response.status == 200:
                    await asyncio.sleep(0.5)  # let every serve process bind
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("ecrm serve did not become healthy in 30 s")


async def post_all(session: aiohttp.ClientSession, url: str, requests: list[tuple[bytes, dict[str, str]]],
                   concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(requests)

    async def client() -> None:
        for body, headers in queue:
            began = time.perf_counter()
            async with session.post(f"{url}/webhooks/shopify", data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"answer {response.status}: {await response.text()}")
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    return time.perf_counter() - began, latencies


@dataclass
class Drain:
    mapped_at_end: int  # mapped when the load ended
    first_seen: int  # mapped when the first mapped webhook was seen
    seconds: float  # from then until none was left
    stored: int
    orders: int

    def rate(self, n: int) -> float:
        return (n - self.first_seen) / self.seconds if self.seconds > 0 else float("nan")


async def mapped_count(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM received_webhooks WHERE status = 'mapped'"))


async def watch_mapping(database: str, mappers: Callable[[], list[psutil.Process]]) -> tuple[int, float, Cpu]:
    """Poll until the first webhook is mapped: (how many were mapped then, when, the CPU of
    `mappers` from then on: not their start-up)."""
    connection = await connect(database)
    try:
        while True:
            mapped = await mapped_count(connection)
            if mapped:
                return mapped, time.perf_counter(), Cpu.of(mappers)
            await asyncio.sleep(0.02)
    finally:
        await connection.close()


async def connect(database: str) -> asyncpg.Connection:
    return await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{database}")


async def wait_mapped(connection: asyncpg.Connection, first: asyncio.Task[tuple[int, float, Cpu]],
                      patience: float = 600) -> tuple[Drain, float]:
    """How the mapping went, and the CPU seconds of the mappers `first` watched since it saw one mapped."""
    mapped_at_end = await mapped_count(connection)
    began = time.perf_counter()
    while time.perf_counter() - began < patience:
        pending = await connection.fetchval("SELECT count(*) FROM received_webhooks WHERE status <> 'mapped'")
        if pending == 0 and first.done():
            break
        await asyncio.sleep(0.02)
    done = time.perf_counter()
    first_seen, first_at, mappers = await first
    mapper_cpu = mappers.seconds()
    stored = await connection.fetchval("SELECT count(*) FROM received_webhooks")
    orders = await connection.fetchval("SELECT count(*) FROM orders")
    return Drain(mapped_at_end, first_seen, done - first_at, int(stored), int(orders)), mapper_cpu


async def run(args: argparse.Namespace, work: Path) -> int:
    database_url = await fresh_postgres(args.database)
    redis = args.mapping != "serve"
    if redis:
        flush = await create_pool(RedisSettings.from_dsn(REDIS_URL))
        await flush.flushdb()
        await flush.aclose()
    requests = deliveries(args.n)
    port = free_port()
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": database_url,
           "ECRM_SHOPS__SHOPIFY_SECRET": SHOPIFY_SECRET, "ECRM_REDIS_URL": REDIS_URL if redis else ""}
    if start(["init"], env, work / "init.log", args.tree).wait() != 0:  # the schema of the tree's migrations
        raise SystemExit(f"ecrm init failed: see {work / 'init.log'}")
    serve = start(["serve", "--dev", "--port", str(port), "--workers", str(args.workers)], env, work / "serve.log",
                  args.tree)
    processes, profilers = [serve], []
    connection = await connect(args.database)
    try:
        if args.mapping == "worker":
            processes.append(worker := start(["worker", "--dev"], env, work / "worker.log", args.tree))
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:
            await wait_healthy(session, url)
            await post_all(session, url, requests[:args.warmup], args.concurrency)  # connections opened
            if args.profile:
                profilers.append(profile(serve, args.profile / f"serve-{args.mapping}.txt"))
            serve_cpu, pg_cpu = Cpu.of(tree_of(serve.pid)), Cpu.of(backends(args.database))
            first = asyncio.create_task(watch_mapping(args.database, tree_of(worker.pid) if args.mapping == "worker"
                                                      else list))
            seconds, latencies = await post_all(session, url, requests[args.warmup:], args.concurrency)
        serve_load, pg_load = serve_cpu.seconds(), pg_cpu.seconds()
        if args.mapping == "after":
            first.cancel()
            processes.append(worker := start(["worker", "--dev"], env, work / "worker.log", args.tree))
            first = asyncio.create_task(watch_mapping(args.database, tree_of(worker.pid)))
            if args.profile:
                profilers.append(profile(worker, args.profile / "worker-after.txt"))
        drain, worker_cpu = await wait_mapped(connection, first)
        serve_all, pg_all = serve_cpu.seconds(), pg_cpu.seconds()
    finally:
        await connection.close()
        for process in [*profilers, *reversed(processes)]:
            process.send_signal(signal.SIGINT if process in profilers else signal.SIGTERM)
            process.wait(timeout=30)
    n, timed = args.n, args.n - args.warmup
    quantiles = statistics.quantiles(latencies, n=100)
    where = {"serve": "in ecrm serve, alongside", "worker": "on one ecrm worker (Redis), alongside",
             "after": "on one ecrm worker (Redis) started after the load"}[args.mapping]
    print(f"signed Shopify orders/create webhooks, PostgreSQL, {args.workers} serve process(es), "
          f"{args.concurrency} clients, mapping {where}")
    print(f"  acknowledged {timed} (after {args.warmup} to warm up) in {seconds:.2f} s: {timed / seconds:,.0f} req/s, "
          f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms; CPU per request: serve "
          f"{serve_load * 1000 / timed:.3f} ms, postgres {pg_load * 1000 / timed:.3f} ms")
    if args.mapping == "serve":
        cpu = f"serve CPU {serve_all * 1000 / timed:.3f} ms/webhook acknowledged and mapped"
    else:
        cpu = f"worker CPU {worker_cpu * 1000 / max(n - drain.first_seen, 1):.3f} ms/webhook mapped"
    print(f"  mapping: {drain.mapped_at_end} mapped when the load ended; {drain.rate(n):,.0f} webhooks/s from the "
          f"first mapped until none left ({drain.seconds:.2f} s); {cpu}; postgres backends (load and mapping) "
          f"{pg_all * 1000 / timed:.3f} ms/webhook")
    print(f"  stored {drain.stored}, orders {drain.orders}")
    ok = drain.stored == drain.orders == n
    print("  OK: every webhook stored once and mapped" if ok else "  FAILED: lost or doubled webhooks")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shop_webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500, help="requests before the timed ones (not timed)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mapping", choices=MODES, default="serve")
    parser.add_argument("--database", default=DATABASE, help="the PostgreSQL database to (re)create")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout of ecrm to run (before/after)")
    parser.add_argument("--profile", type=Path, help="a directory for py-spy's raw stacks of serve and worker")
    parser.add_argument("--work", type=Path, default=ROOT / "bench-out" / "shop_webhooks")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers it started on the way out
    return asyncio.run(run(args, args.work))


if __name__ == "__main__":
    raise SystemExit(main())

"""Signed Shopify order webhooks against `ecrm serve` on PostgreSQL: acknowledged rate,
latency, and the lag until every one is mapped to an order.

    python -m bench.shop_webhooks [-n 5000] [--concurrency 50] [--workers 1] [--redis]

A fresh database (`ecrm_bench_shop`), `ecrm serve --workers N` with a Shopify secret, then
`-n` distinct `orders/create` deliveries (each its own customer and order, ~3 KB, signed as
Shopify signs them) from `--concurrency` clients in this process. Without `--redis` the API
maps the webhooks in its own processes, competing with ingest for the same cores; with it,
one `ecrm worker` does, on a Redis database of its own (BENCH_SHOP_REDIS_URL, default /12: a
worker takes every job of its database, other benches' too). It prints req/s, p50/p99 of the
acknowledgements, the seconds until the last webhook was mapped, and checks that every
acknowledged webhook is stored once and ended up an order (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from bench.send import fresh_postgres
from ecrm.db import create_engine, migrate
from tests.shops.payloads import SHOPIFY_SECRET, shopify_customer, shopify_order, shopify_request

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "ecrm_bench_shop"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# a Redis database of its own: a worker takes every job of its database, other benches' too
REDIS_URL = os.environ.get("BENCH_SHOP_REDIS_URL", "redis://127.0.0.1:6379/12")


def deliveries(n: int) -> list[tuple[bytes, dict[str, str]]]:
    return [shopify_request("orders/create", shopify_order(id=10_000 + i, customer=shopify_customer(id=20_000 + i)),
                            f"bench-{i}") for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ecrm", *command], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{url}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("ecrm serve did not become healthy in 30 s")


async def post_all(url: str, requests: list[tuple[bytes, dict[str, str]]],
                   concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_healthy(session, url)

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


async def wait_mapped(n: int, patience: float = 300) -> tuple[float, int, int]:
    """Seconds until every webhook is mapped (or `patience` ran out); (seconds, webhooks stored, orders)."""
    began = time.perf_counter()
    connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{DATABASE}")
    try:
        while time.perf_counter() - began < patience:
            pending = await connection.fetchval("SELECT count(*) FROM received_webhooks WHERE status <> 'mapped'")
            if pending == 0:
                break
            await asyncio.sleep(0.05)
        stored = await connection.fetchval("SELECT count(*) FROM received_webhooks")
        orders = await connection.fetchval("SELECT count(*) FROM orders")
    finally:
        await connection.close()
    return time.perf_counter() - began, int(stored), int(orders)


async def run(args: argparse.Namespace, work: Path) -> int:
    database_url = await fresh_postgres(DATABASE)
    engine = create_engine(database_url)
    await migrate(engine)
    await engine.dispose()
    requests = deliveries(args.n)
    port = free_port()
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": database_url,
           "ECRM_SHOPS__SHOPIFY_SECRET": SHOPIFY_SECRET, "ECRM_REDIS_URL": REDIS_URL if args.redis else ""}
    processes = [start(["serve", "--dev", "--port", str(port), "--workers", str(args.workers)], env,
                       work / "serve.log")]
    if args.redis:
        processes.append(start(["worker", "--dev"], env, work / "worker.log"))
    try:
        seconds, latencies = await post_all(f"http://127.0.0.1:{port}", requests, args.concurrency)
        lag, stored, orders = await wait_mapped(args.n)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"signed Shopify orders/create webhooks, PostgreSQL, {args.workers} serve process(es), "
          f"{args.concurrency} clients, mapping {'on ecrm worker (Redis)' if args.redis else 'in ecrm serve'}")
    print(f"  acknowledged {args.n} in {seconds:.2f} s: {args.n / seconds:,.0f} req/s, "
          f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms")
    print(f"  all mapped {lag:.2f} s after the last acknowledgement; stored {stored}, orders {orders}")
    ok = stored == orders == args.n
    print("  OK: every webhook stored once and mapped" if ok else "  FAILED: lost or doubled webhooks")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shop_webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--work", type=Path, default=ROOT / "bench-out" / "shop_webhooks")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers it started on the way out
    return asyncio.run(run(args, args.work))


if __name__ == "__main__":
    raise SystemExit(main())

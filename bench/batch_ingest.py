"""Batch ingest benchmark: `POST /v1/events:batch`, `/v1/profiles:batch` and `/v1/orders:batch`
against `ecrm serve` on a fresh PostgreSQL database.

    python -m bench.batch_ingest [--batches 40] [--clients 4] [--size 1000] [--workers 2]

A bounded local load client (`--clients` concurrent connections, `--batches` batches per route,
`--size` items each) posts batches of distinct items (each event with a client `id`) and prints,
per route, items/s, batch latency p50 and p99, and the ratio to the issue's 20,000 events/s
target. Every answer must be 200 with no per-item error, or the run stops. Server and client
share the machine's cores: compare runs on one machine, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.send import fresh_postgres
from ecrm.api.apikeys import create_api_key
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, session_factory

ROOT = Path(__file__).resolve().parent.parent
TARGET_EVENTS_PER_SECOND = 20_000
Item = Callable[[int], dict[str, Any]]
ROUTES: dict[str, Item] = {
    "events": lambda i: {"external_id": f"c{i % 5000}", "name": "page_viewed", "id": f"e{i}",
                         "properties": {"path": f"/p/{i % 300}", "ref": "bench"}},
    "profiles": lambda i: {"external_id": f"c{i}", "email": f"c{i}@example.com", "first_name": "Emma",
                           "traits": {"points": i % 500}, "consent": {"email": {"state": "granted"}}},
    "orders": lambda i: {"order_id": f"#{i}", "external_id": f"c{i % 5000}", "status": "paid", "total": "19.98",
                         "currency": "THB", "line_items": [{"sku": "TEA-1", "name": "Thai tea", "quantity": 2,
                                                            "unit_price": "9.99"}]},
}


async def prepare(database_url: str) -> str:
    engine = create_engine(database_url)
    await migrate(engine)
    async with session_factory(engine).begin() as session:
        key = await create_api_key(session, "bench", SYSTEM_CLOCK.now())
    await engine.dispose()
    return key


def start_server(database_url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": database_url, "ECRM_REDIS_URL": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "ecrm", "serve", "--dev", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_up(base: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            try:
                async with http.get(f"{base}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def load(base: str, key: str, route: str, args: argparse.Namespace) -> tuple[float, list[float]]:
    """Post `--batches` batches over `--clients` connections; wall seconds and each batch's latency."""
    make, pending = ROUTES[route], list(range(args.batches))
    bodies = {b: {"items": [make(b * args.size + i) for i in range(args.size)]} for b in pending}
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}

    async def client(http: aiohttp.ClientSession) -> None:
        while pending:
            batch = pending.pop()
            started = time.perf_counter()
            async with http.post(f"{base}/v1/{route}:batch", json=bodies[batch], headers=headers) as resp:
                answer = await resp.json()
            latencies.append(time.perf_counter() - started)
            if resp.status != 200 or answer["errors"]:
                raise SystemExit(f"{route}: {resp.status} {str(answer)[:300]}")

    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(args.clients)))
        return time.perf_counter() - started, latencies


def report(route: str, args: argparse.Namespace, seconds: float, latencies: list[float]) -> str:
    items = args.batches * args.size
    rate = items / seconds
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    line = (f"{route:9} {items:>7} items {seconds:6.2f} s {rate:>9,.0f} items/s  batch p50 "
            f"{statistics.median(latencies) * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms")
    if route == "events":
        line += f"  ratio to {TARGET_EVENTS_PER_SECOND:,}/s: {rate / TARGET_EVENTS_PER_SECOND:.2f}"
    return line


async def run(args: argparse.Namespace) -> None:
    database_url = await fresh_postgres("ecrm_bench_batch")
    key = await prepare(database_url)
    server = start_server(database_url, args.port, args.workers)
    try:
        base = f"http://127.0.0.1:{args.port}"
        await wait_up(base)
        for route in ("profiles", "events", "orders"):
            print(report(route, args, *await load(base, key, route, args)), flush=True)
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8791)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

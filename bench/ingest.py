"""Ingest benchmark: a bounded local load client against `ecrm serve --workers N` on PostgreSQL,
and the CSV import of a generated file.

    python -m bench.ingest [--client wrk|python] [--clients 50] [--seconds 10] [--workers 2]
                           [--rows 1000000] [--only events profiles batch shopify import]
                           [--database ecrm_bench_ingest] [--against PATH] [--quick]

The script makes a fresh, migrated PostgreSQL database (`--database`, default `ecrm_bench_ingest`,
on `BENCH_PG_URL`, default the local server), an API key, and starts `python -m ecrm serve
--workers N` itself. Each scenario runs `--clients` concurrent connections for `--seconds` (after
a warm-up of a tenth of it) and prints the client, req/s, p50/p99 latency, the server's CPU per
request (user + system time of the supervisor and its workers, read from /proc through psutil),
the client's, PostgreSQL's (every postgres process, and of those the backends of the bench
database) and the errors: any answer that is not 2xx counts as one and the first few are
printed. Then it checks that the scenario's table gained what the answers said was stored
(events, new profiles = the 201 answers, received webhooks); a mismatch fails the script.

The load client (`--client`):
- wrk (the default when the `wrk` binary is on PATH; `apt-get install wrk`, Debian bookworm has
  4.1.0): a C load generator costing a fraction of the Python client's CPU per request, which
  on two shared cores is CPU the server gets back. The requests are drawn beforehand by the same
  body functions as the Python client's and replayed by `bench/ingest_wrk.lua` (`bench/wrk.py`);
  `--seconds` is rounded to whole seconds (at least 1); then the answers in flight are awaited,
  as the Python client does, so every request sent is counted and checked (a request still
  unanswered after 30 s may be stored or not). Its p99 is wrk's, corrected for coordinated
  omission (`bench/wrk.py`), so a little above the Python client's plain one on a long tail.
- python: aiohttp loops in this process (~0.2 ms of CPU a request on the same cores).

Scenarios:

- events: single `POST /v1/events` (product views and cart events of ~20,000 customers);
- profiles: single `POST /v1/profiles` upserts (half new customers, half updates, traits and consent);
- batch: `POST /v1/events:batch` of 100 events (events/s), when the route exists;
- shopify: signed Shopify `orders/create` webhooks, when the route exists (secret in the
  environment variable named by `--shopify-secret-env`), each with a webhook id of its own;
- import: `ecrm profiles import` of a generated `--rows`-row CSV file into an empty database
  (rows/s and the importer's peak RSS, sampled every 0.1 s).

A route that answers 404 or 405 to a probe is skipped with a note. `--against PATH` runs every
scenario on the checkout at PATH first, then on this one (alternating for `--repeat` rounds) and
prints the ratio this/that: both run this script's client on the same database server.
Compare clients by running the script once per `--client`, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import hmac
import json
import math
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import psutil
from redis import Redis

from bench import wrk
from ecrm import loop
from ecrm.api.apikeys import create_api_key
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, session_factory

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "ecrm_bench_ingest"
CUSTOMERS = 20_000
BATCH = 100
SHOWN_ERRORS = 5
SCENARIOS = ("events", "profiles", "batch", "shopify", "import")
CLIENTS = ("wrk", "python")
# what each HTTP scenario stores, to check against the answers: (rows, the count query)
STORED = {"events": ("events", "SELECT count(*) FROM events"), "batch": ("events", "SELECT count(*) FROM events"),
          "profiles": ("new profiles", "SELECT count(*) FROM profiles"),
          "shopify": ("webhooks", "SELECT count(*) FROM received_webhooks")}
# requests a second drawn beforehand for wrk, about twice the targets: a run seldom comes round
# to its first request again, which changes no work (events carry no client id; profiles are
# upserts) but for webhook ids, which the script makes fresh then. Batches are 24 KB each.
POOL_RATES = {"events": 6000, "profiles": 4000, "batch": 100, "shopify": 6000}
UNIQUE_HEADERS = {"shopify": "X-Shopify-Webhook-Id"}  # a repeated value would be a redelivery
Body = Callable[[random.Random], tuple[str, bytes, dict[str, str]]]  # path, body, extra headers


@dataclass
class StoreCheck:
    """What a scenario's table gained against what the client was told was stored."""

    what: str  # "events", "new profiles", "webhooks"
    stored: int
    expected: int  # from the answers, the warm-up's included
    answers: str = "2xx"  # the answers that say an item was stored ("201": a profile created)
    slack: int = 0  # items of requests unanswered when the client stopped (wrk): each may be stored or not

    @property
    def ok(self) -> bool:
        return self.expected <= self.stored <= self.expected + self.slack

    def line(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        slack = f" (+ up to {self.slack} of requests unanswered at the stop)" if self.slack else ""
        return f"stored {self.stored:,} {self.what}, {self.expected:,} by the {self.answers} answers{slack}: {verdict}"


@dataclass
class LoadResult:
    scenario: str
    client: str
    requests: int
    items: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    errors: int
    samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0  # every postgres process: other users of the server count too
    backends_cpu_seconds: float = 0.0  # the postgres processes serving the bench database only
    answered: Counter[int] = field(default_factory=Counter)  # statuses, the warm-up's included
    unanswered: int = 0  # requests sent and not answered when the client stopped (wrk)
    notes: list[str] = field(default_factory=list)
    check: StoreCheck | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def item_rate(self) -> float:
        return self.items / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / max(1, self.requests)

    def per_request_ms(self, seconds: float) -> float:
        return seconds * 1000 / max(1, self.requests)

    def line(self) -> str:
        items = f", {self.item_rate:,.0f} items/s" if self.items != self.requests else ""
        return (f"{self.scenario:9s} {self.client:6s} {self.rate:8,.0f} req/s{items}, p50 {self.p50_ms:6.1f} ms, "
                f"p99 {self.p99_ms:6.1f} ms, server CPU {self.cpu_ms:5.2f} ms/req "
                f"(client {self.per_request_ms(self.client_cpu_seconds):.2f}, "
                f"postgres {self.per_request_ms(self.postgres_cpu_seconds):.2f}, "
                f"its backends of this database {self.per_request_ms(self.backends_cpu_seconds):.2f}), "
                f"{self.requests} requests, {self.errors} errors")


@dataclass
class ImportResult:
    rows: int
    seconds: float
    peak_rss_mb: float
    returncode: int
    stored: int = 0  # profiles in the database afterwards
    cpu_seconds: float = 0.0  # the importer's user + system time, its child processes' included
    postgres_cpu_seconds: float = 0.0  # the import's database backends (sampled every 0.1 s)
    children_cpu_seconds: float = 0.0  # of which its child processes' (the reading process; sampled every 0.1 s)
    children_peak_rss_mb: float = 0.0  # the largest peak RSS of a child process

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def line(self) -> str:
        per_row = 1e6 / max(1, self.rows)
        children = ""
        if self.children_cpu_seconds:
            children = (f" = importer {(self.cpu_seconds - self.children_cpu_seconds) * per_row:.1f} "
                        f"+ its children {self.children_cpu_seconds * per_row:.1f}")
        rss = f", children {self.children_peak_rss_mb:.0f} MB" if self.children_peak_rss_mb else ""
        return (f"import    {self.rate:8,.0f} rows/s, {self.rows} rows in {self.seconds:.1f} s, "
                f"peak RSS {self.peak_rss_mb:.0f} MB{rss}, CPU {self.cpu_seconds * per_row:.1f} us/row{children} "
                f"(postgres {self.postgres_cpu_seconds * per_row:.1f}), {self.stored} profiles stored, "
                f"exit code {self.returncode}")


Results = dict[str, LoadResult | ImportResult]


# ---- request bodies ----

def _customer(rng: random.Random) -> str:
    return f"cust-{rng.randrange(CUSTOMERS)}"


def _event(rng: random.Random) -> dict[str, Any]:
    sku = rng.randrange(5000)
    name = rng.choice(("product.viewed", "product.viewed", "cart_updated", "page.viewed"))
    price = f"{sku % 300 + 9}.90"
    properties: dict[str, Any] = {
        "sku": f"SKU-{sku}", "price": price, "currency": "THB", "url": f"https://shop.example/p/{sku}",
        "category": rng.choice(("shoes", "bags", "hats"))}
    if name == "cart_updated":  # the cart shape the API checks (README, "Carts")
        properties = {"cart_id": f"cart-{rng.randrange(CUSTOMERS)}", "currency": "THB", "total": price,
                      "line_items": [{"sku": f"SKU-{sku}", "name": "Shoe", "quantity": 1, "unit_price": price}]}
    return {"external_id": _customer(rng), "name": name, "properties": properties,
            "occurred_at": "2026-11-30T10:15:00+07:00"}


def event_body(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    return "/v1/events", json.dumps(_event(rng)).encode(), {}


def profile_body(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    n = rng.randrange(CUSTOMERS)
    profile = {"external_id": f"cust-{n}", "email": f"c{n}@shop.example", "first_name": rng.choice(("Ana", "สมชาย")),
               "locale": rng.choice(("en_US", "th_TH")), "time_zone": "Asia/Bangkok",
               "traits": {"tier": rng.choice(("gold", "silver")), "orders": rng.randrange(40), "city": "Bangkok"},
               "consent": {"email": {"state": rng.choice(("granted", "withdrawn"))}}}
    return "/v1/profiles", json.dumps(profile).encode(), {}


def batch_body(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    return "/v1/events:batch", json.dumps({"items": [_event(rng) for _ in range(BATCH)]}).encode(), {}


def shopify_body(secret: str) -> Body:
    def body(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
        n = rng.randrange(CUSTOMERS)
        order_id = rng.randrange(10**12)
        order = {"id": order_id, "name": f"#{order_id % 100000}", "email": f"c{n}@shop.example",
                 "created_at": "2026-11-30T10:15:00+07:00", "currency": "THB", "total_price": "1290.00",
                 "financial_status": "paid", "buyer_accepts_marketing": True,
                 "customer": {"id": n, "email": f"c{n}@shop.example", "first_name": "Ana", "last_name": "Silva"},
                 "line_items": [{"id": order_id + 1, "sku": "SKU-1", "title": "Shoe", "quantity": 1,
                                 "price": "1290.00"}]}
        raw = json.dumps(order).encode()
        digest = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
        return "/webhooks/shopify", raw, {"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": digest,
                                          "X-Shopify-Shop-Domain": "bench.myshopify.com",
                                          "X-Shopify-Webhook-Id": f"bench-{order_id}"}
    return body


# ---- database and server ----

def database_url(name: str) -> str:
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fresh_database(name: str) -> tuple[str, str]:
    """Drop and create the bench database, migrate it, make an API key; (url, key)."""
    await drop_database(name)
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url(name)
    engine = create_engine(url)
    try:
        await migrate(engine)
        async with session_factory(engine).begin() as session:
            key = await create_api_key(session, "bench", SYSTEM_CLOCK.now())
    finally:
        await engine.dispose()
    return url, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_env(tree: Path, url: str, extra: dict[str, str], redis_url: str = "") -> dict[str, str]:
    """The environment of an `ecrm` subprocess running the code of checkout `tree`."""
    return {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": url, "ECRM_REDIS_URL": redis_url,
            "PYTHONPATH": str(tree), **extra}


@contextmanager
def server(tree: Path, url: str, workers: int, redis_url: str = "") -> Iterator[tuple[str, psutil.Process]]:
    """`ecrm serve --workers N` of `tree` on a free port; its stderr goes to a temporary file
    (a pipe nobody reads could fill and stall it), shown if it fails to start."""
    port = free_port()
    command = [sys.executable, "-m", "ecrm", "serve", "--dev", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    with tempfile.TemporaryFile() as log, subprocess.Popen(
            command, env=tree_env(tree, url, {}, redis_url), cwd=tree, stdout=subprocess.DEVNULL,
            stderr=log) as process:
        try:
            _wait_listening(port, process, log)
            yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def mapper(tree: Path, url: str, redis_url: str) -> Iterator[psutil.Process | None]:
    """With `redis_url`, an `ecrm worker` that maps the webhooks (as in production: the API only
    stores them) on that Redis database, flushed first; without, nothing (the API maps them)."""
    if not redis_url:
        yield None
        return
    Redis.from_url(redis_url).flushdb()
    command = [sys.executable, "-m", "ecrm", "worker", "--dev"]
    with subprocess.Popen(command, env=tree_env(tree, url, {}, redis_url), cwd=tree, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        try:
            yield psutil.Process(process.pid)
        finally:
            process.terminate()
            process.wait(30)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"ecrm serve exited ({process.returncode}):\n{log.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.5)  # let every worker bind
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("ecrm serve did not start listening within 30 s")


def postgres_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]


def serves_database(process: psutil.Process, database: str) -> bool:
    """Whether a postgres process is a backend connected to `database` (its title names it)."""
    try:
        title = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return f" {database} " in title


def cpu_seconds(root: psutil.Process) -> float:
    return sum(cpu_of([root, *root.children(recursive=True)]).values())


def cpu_of(processes: list[psutil.Process]) -> dict[int, float]:
    """User + system seconds of each process still alive, by pid."""
    found = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[process.pid] = times.user + times.system
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes alive at both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


# ---- the load clients ----

@dataclass
class CpuSpent:
    server: float
    postgres: float
    backends: float  # of `postgres`, the backends of the bench database


class CpuWindow:
    """The server's and PostgreSQL's CPU seconds between `start()` and `stop()`; a postgres
    process started meanwhile (a pool's new connection) counts from zero."""

    def __init__(self, root: psutil.Process, database: str) -> None:
        self.root, self.database = root, database
        self.server_before = 0.0
        self.postgres_before: dict[int, float] = {}

    def start(self) -> None:
        self.server_before, self.postgres_before = cpu_seconds(self.root), cpu_of(postgres_processes())

    def stop(self) -> CpuSpent:
        server, processes = cpu_seconds(self.root) - self.server_before, postgres_processes()
        postgres = cpu_of(processes)
        before = {pid: self.postgres_before.get(pid, 0.0) for pid in postgres}
        mine = {p.pid for p in processes if serves_database(p, self.database)}
        backends = {pid: seconds for pid, seconds in postgres.items() if pid in mine}
        return CpuSpent(server, cpu_delta(before, postgres), cpu_delta(before, backends))


@dataclass
class Tally:
    """The answers of one run of the Python client."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def add(self, status: int, seconds: float, path: str, text: bytes) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1
        if not 200 <= status < 300 and len(self.samples) < SHOWN_ERRORS:
            self.samples.append(f"{status} {path}: {text[:200].decode(errors='replace')}")

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def common_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def load_python(base: str, key: str, scenario: str, body: Body, args: argparse.Namespace,
                      root: psutil.Process, items_per_request: int = 1) -> LoadResult:
    """`--clients` aiohttp loops posting `body()` for `--seconds`, after a warm-up of a tenth of it."""
    connector = aiohttp.TCPConnector(limit=args.clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=common_headers(key)) as http:
        warm_up, tally = Tally(), Tally()
        await _run_clients(http, base, body, args.clients, args.seconds / 10, warm_up)
        me, window = psutil.Process(), CpuWindow(root, args.database)
        client_before = cpu_of([me])
        window.start()
        started = time.perf_counter()
        await _run_clients(http, base, body, args.clients, args.seconds, tally)
        seconds = time.perf_counter() - started
        spent = window.stop()
    requests = len(tally.latencies)
    return LoadResult(scenario, "python", requests, requests * items_per_request, seconds, tally.percentile(0.5),
                      tally.percentile(0.99), spent.server, requests - _ok(tally.statuses), tally.samples,
                      client_cpu_seconds=cpu_delta(client_before, cpu_of([me])), postgres_cpu_seconds=spent.postgres,
                      backends_cpu_seconds=spent.backends, answered=warm_up.statuses + tally.statuses)


def _ok(statuses: Counter[int]) -> int:
    return sum(n for status, n in statuses.items() if 200 <= status < 300)


async def _run_clients(http: aiohttp.ClientSession, base: str, body: Body, clients: int, seconds: float,
                       tally: Tally) -> None:
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            path, data, extra = body(rng)
            started = time.perf_counter()
            async with http.post(base + path, data=data, headers=extra) as response:
                text = await response.read()
            tally.add(response.status, time.perf_counter() - started, path, text)

    await asyncio.gather(*(client(random.randrange(2**32)) for _ in range(clients)))


def write_wrk_files(prefix: Path, body: Body, key: str, threads: int, count: int, unique: str | None,
                    seen: set[str]) -> None:
    """`count` requests of `body` in `threads` files `prefix.1` .. (one per wrk thread)."""
    for thread in range(1, threads + 1):
        rng = random.Random(random.randrange(2**32))
        requests = list(wrk.draw_requests(body, rng, -(-count // threads), common_headers(key), unique, seen))
        with open(f"{prefix}.{thread}", "wb") as file:
            wrk.write_requests(file, requests, unique)


async def load_wrk(base: str, key: str, scenario: str, body: Body, args: argparse.Namespace,
                   root: psutil.Process, items_per_request: int = 1) -> LoadResult:
    """wrk with `--clients` connections for `--seconds` (whole seconds), after a warm-up run of a
    tenth of it, each over requests drawn beforehand (`POOL_RATES` a second: a Shopify webhook id
    is never sent twice; other bodies may come round again, which changes no work)."""
    threads = max(1, min(args.wrk_threads, args.clients))
    connections = args.clients - args.clients % threads
    unique = UNIQUE_HEADERS.get(scenario)
    seconds, warm_seconds = max(1, round(args.seconds)), max(1, round(args.seconds / 10))
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ecrm-bench-wrk-") as tmp:
        warm_prefix, prefix = Path(tmp) / "warm-up", Path(tmp) / "load"
        for path, run_seconds in ((warm_prefix, warm_seconds), (prefix, seconds)):
            await asyncio.to_thread(write_wrk_files, path, body, key, threads,
                                    math.ceil(POOL_RATES[scenario] * run_seconds), unique, seen)
        warm_up = await wrk.run(base, warm_prefix, threads, connections, warm_seconds)
        window = CpuWindow(root, args.database)
        run = await wrk.run(base, prefix, threads, connections, seconds, window.start)
        spent = window.stop()
    summary = run.summary
    result = LoadResult(scenario, "wrk", summary.answered, summary.answered * items_per_request, summary.seconds,
                        summary.p50_ms, summary.p99_ms, spent.server, summary.errors, summary.samples,
                        client_cpu_seconds=run.cpu_seconds, postgres_cpu_seconds=spent.postgres,
                        backends_cpu_seconds=spent.backends,
                        answered=Counter(warm_up.summary.statuses) + Counter(summary.statuses),
                        unanswered=warm_up.summary.unanswered + summary.unanswered)
    if any(summary.socket_errors.values()):
        result.notes.append(f"socket errors: {summary.socket_errors}")
    if summary.repeated:
        again = f" (each with a fresh {unique})" if unique else ""
        result.notes.append(f"{summary.repeated} of {summary.sent} requests repeated a request of the run{again}")
    return result


async def route_exists(base: str, key: str, body: Body) -> bool:
    """False when the route answers 404 or 405 (not there yet)."""
    path, data, extra = body(random.Random(0))
    async with aiohttp.ClientSession() as http, http.post(
            base + path, data=data, headers={"Authorization": f"Bearer {key}",
                                             "Content-Type": "application/json", **extra}) as response:
        return response.status not in (404, 405)


# ---- the CSV import ----

def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["external_id", "email", "first_name", "last_name", "locale", "time_zone",
                         "consent_email", "tier", "city"])
        for i in range(rows):
            writer.writerow([f"imp-{i}", f"imp{i}@shop.example", ("Ana", "สมชาย", "Sara")[i % 3], "Silva",
                             ("en_US", "th_TH", "fa")[i % 3], "Asia/Bangkok", ("yes", "no")[i % 2],
                             ("gold", "silver", "bronze")[i % 3], "Bangkok"])


def run_import(tree: Path, url: str, path: Path, rows: int, database: str) -> ImportResult:
    """Run the import; its CPU is this process's children's (the importer is the only one, and
    waits for its own), of which its children's as last sampled."""
    command = [sys.executable, "-m", "ecrm", "profiles", "import", str(path)]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    backends: dict[int, float] = {}
    offspring_cpu: dict[int, float] = {}
    with tempfile.TemporaryFile() as log, subprocess.Popen(
            command, env=tree_env(tree, url, {"COLUMNS": "100"}), cwd=tree, stdout=subprocess.DEVNULL,
            stderr=log) as process:
        watched, peak, children_peak = psutil.Process(process.pid), 0, 0
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
                offspring = watched.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            children_peak = max([children_peak, *peak_rss(offspring)])
            offspring_cpu.update(cpu_of(offspring))
            backends.update(cpu_of(backends_of(database)))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if process.returncode:
            log.seek(0)
            sys.stderr.write(log.read().decode()[-2000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return ImportResult(rows, seconds, peak / 2**20, process.returncode, cpu_seconds=cpu,
                        postgres_cpu_seconds=sum(backends.values()), children_cpu_seconds=sum(offspring_cpu.values()),
                        children_peak_rss_mb=children_peak / 2**20)


def peak_rss(processes: list[psutil.Process]) -> list[int]:
    """The RSS of each process still alive."""
    found = []
    for process in processes:
        try:
            found.append(process.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return found


def backends_of(database: str) -> list[psutil.Process]:
    """The PostgreSQL backends connected to `database` (by their process title)."""
    found = []
    for process in postgres_processes():
        try:
            if f" {database} " in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


async def webhook_statuses(name: str) -> dict[str, int]:
    connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        rows = await connection.fetch("SELECT status, count(*) AS n FROM received_webhooks GROUP BY status")
    finally:
        await connection.close()
    return {row["status"]: int(row["n"]) for row in rows}


async def report_mapping(name: str, wait: float = 60.0) -> None:
    """How far mapping had got when the load ended, and how long the rest took (the webhooks
    are mapped after the answer, so req/s alone does not say whether mapping keeps up)."""
    started = time.perf_counter()
    at_end = await webhook_statuses(name)
    received = at_end.get("received", 0)
    while received and time.perf_counter() - started < wait:
        await asyncio.sleep(0.5)  # counted through the claim's partial index, not a scan of every body
        received = await count_rows(name, "SELECT count(*) FROM received_webhooks WHERE status = 'received'")
    seconds = time.perf_counter() - started
    statuses = await webhook_statuses(name)
    left = at_end.get("received", 0) - received
    print(f"          webhooks when the load ended: {at_end}; {statuses} {seconds:.1f} s later "
          f"(the backlog mapped at {left / seconds:,.0f} a second)", flush=True)


async def count_rows(name: str, query: str) -> int:
    connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def settled_count(name: str, query: str, wait: float = 5.0) -> int:
    """The count once two readings 0.2 s apart agree: a request wrk gave up waiting for (30 s)
    may still be committing."""
    deadline = time.perf_counter() + wait
    count = await count_rows(name, query)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
        again = await count_rows(name, query)
        if again == count:
            break
        count = again
    return count


def store_check(scenario: str, what: str, result: LoadResult, items: int, stored: int) -> StoreCheck:
    """A profile upsert stores a new row only when it answers 201 (200: an update); every other
    2xx stores `items` rows."""
    if scenario == "profiles":
        return StoreCheck(what, stored, result.answered[201], "201", result.unanswered)
    return StoreCheck(what, stored, _ok(result.answered) * items, "2xx", result.unanswered * items)


# ---- the runs ----

async def run_scenario(base: str, key: str, scenario: str, body: Body, items: int, args: argparse.Namespace,
                       root: psutil.Process) -> LoadResult:
    """One scenario with the chosen client, printed, and checked against what the database gained."""
    what, query = STORED[scenario]
    before = await count_rows(args.database, query)
    load = load_wrk if args.client == "wrk" else load_python
    result = await load(base, key, scenario, body, args, root, items)
    print(result.line(), flush=True)
    for sample in result.samples:
        print(f"          error: {sample}")
    for note in result.notes:
        print(f"          note: {note}")
    stored = await settled_count(args.database, query) - before
    result.check = store_check(scenario, what, result, items, stored)
    print(f"          {result.check.line()}", flush=True)
    if scenario == "shopify":
        await report_mapping(args.database)
    return result


async def run_tree(tree: Path, args: argparse.Namespace, csv_path: Path | None) -> Results:
    results: Results = {}
    http_scenarios = [s for s in args.only if s != "import"]
    if http_scenarios:
        url, key = await fresh_database(args.database)
        secret = os.environ.get(args.shopify_secret_env)
        bodies: dict[str, tuple[Body, int]] = {"events": (event_body, 1), "profiles": (profile_body, 1),
                                               "batch": (batch_body, BATCH), "shopify": (shopify_body(secret or ""), 1)}
        with server(tree, url, args.workers, args.redis) as (base, root), mapper(tree, url, args.redis) as worker:
            for scenario in http_scenarios:
                body, items = bodies[scenario]
                if scenario == "shopify" and secret is None:
                    print(f"shopify   skipped: set {args.shopify_secret_env} to the app secret the server reads")
                    continue
                if scenario in ("batch", "shopify") and not await route_exists(base, key, body):
                    print(f"{scenario:9s} skipped: the server has no such route (404/405)")
                    continue
                mapping_cpu = cpu_seconds(worker) if worker is not None else 0.0
                result = results[scenario] = await run_scenario(base, key, scenario, body, items, args, root)
                if worker is not None and scenario == "shopify":
                    mapped = cpu_seconds(worker) - mapping_cpu
                    print(f"          the mapping worker's CPU: {mapped * 1000 / result.requests:.2f} "
                          "ms per webhook", flush=True)
    if csv_path is not None:
        url, _ = await fresh_database(args.database)
        result_import = await asyncio.to_thread(run_import, tree, url, csv_path, args.rows, args.database)
        result_import.stored = await count_rows(args.database, STORED["profiles"][1])
        print(result_import.line())
        results["import"] = result_import
    return results


def ratios(before: list[Results], after: list[Results]) -> None:
    print("\nratio this / --against (median over rounds):")
    for scenario in SCENARIOS:
        pairs = [(b[scenario], a[scenario]) for b, a in zip(before, after, strict=True)
                 if scenario in b and scenario in a]
        if not pairs:
            continue
        rate = statistics.median(a.rate / b.rate for b, a in pairs)
        line = f"  {scenario:9s} throughput x{rate:.2f}"
        loads = [(b, a) for b, a in pairs if isinstance(b, LoadResult) and isinstance(a, LoadResult)]
        if loads:
            p99 = statistics.median(a.p99_ms / b.p99_ms for b, a in loads)
            cpu = statistics.median(a.cpu_ms / b.cpu_ms for b, a in loads)
            line += f", p99 x{p99:.2f}, server CPU/req x{cpu:.2f}"
        print(line)


async def main_async(args: argparse.Namespace) -> list[Results]:
    """Run every round; the results of this checkout's runs."""
    with tempfile.TemporaryDirectory(prefix="ecrm-bench-ingest-") as tmp:
        csv_path = None
        if "import" in args.only:
            csv_path = Path(tmp) / "profiles.csv"
            await asyncio.to_thread(write_csv, csv_path, args.rows)
        before: list[Results] = []
        after: list[Results] = []
        try:
            for round_ in range(args.repeat):
                if args.against:
                    print(f"-- round {round_ + 1}: {args.against}", flush=True)
                    before.append(await run_tree(args.against, args, csv_path))
                print(f"-- round {round_ + 1}: {ROOT}", flush=True)
                after.append(await run_tree(ROOT, args, csv_path))
        finally:
            await drop_database(args.database)
        if args.against:
            ratios(before, after)
        return after


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--client", choices=CLIENTS, default=None,
                        help="the load client: wrk (the default when the wrk binary is found) or python (aiohttp)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent connections")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk's threads (its -t)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each HTTP scenario runs")
    parser.add_argument("--workers", type=int, default=2, help="`ecrm serve --workers`")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated CSV file")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--database", default=DATABASE, help="the PostgreSQL database to (re)create and drop")
    parser.add_argument("--redis", default="", metavar="URL",
                        help="run the server with this Redis (a database of its own: it is flushed) and an "
                             "`ecrm worker` mapping the webhooks, as deployed; default: no Redis, the API maps")
    parser.add_argument("--against", type=Path, help="another checkout of ecrm to run first and compare with")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (alternating with --against)")
    parser.add_argument("--shopify-secret-env", default="ECRM_SHOPS__SHOPIFY_SECRET",
                        help="the environment variable holding the Shopify app secret (the server inherits it); "
                             "unset: the shopify scenario is skipped")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 4 clients, 1 s each, 2,000 rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.rows = 4, 1.0, 2000
    if args.client is None:
        args.client = "wrk" if wrk.wrk_binary() else "python"
        if args.client == "python":
            print("note: no wrk on PATH (apt-get install wrk): the Python client measures, "
                  "and takes ~0.2 ms of CPU a request beside the server")
    return args


def failed_checks(results: list[Results]) -> list[str]:
    """The scenarios whose table did not gain what the answers said was stored."""
    return [f"{scenario}: {result.check.line()}" for round_ in results for scenario, result in round_.items()
            if isinstance(result, LoadResult) and result.check is not None and not result.check.ok]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    loop.use_fast_loop()
    failed = failed_checks(asyncio.run(main_async(args)))
    if failed:
        raise SystemExit("the database does not hold what the answers said was stored:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()

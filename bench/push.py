"""Push send benchmark: N profiles with a browser subscription each, through the real pipeline
(`campaigns/back_in_stock_push.yaml`: render push.json, RFC 8291 encryption per message, VAPID
per origin, aiohttp) to the local push service, beside a raw ceiling measured in the same run.

    python -m bench.send --channel push [-n 100000] [--workers 2] [--push-connections 32]

PostgreSQL only: arq on Redis with `--workers` `ecrm worker` processes, timed from the launch to
the run marked done, as `bench.send` does for email. The ceiling: the same number of requests,
encrypted and signed before the clock starts, posted from as many processes through the same
HTTP client (the adapter's aiohttp session, `--push-connections` per process), with no database,
queue, rendering or encryption on the clock; median of `--ceiling-runs`. The push service
(`python -m ecrm.peers.push_service`, its own process) checks each VAPID token once, counts
bodies per endpoint (lost and duplicated come from that tally) and does not decrypt. CPU ms per
message are the workers' (encryption included: the line also gives encryption alone, measured
here), PostgreSQL's and Redis's; the push service's is given apart.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import insert

from bench.raw_ceiling import DEADLINE_S, RawResult, WorkerResult, _next, _run, _summarise
from bench.send import (
    PipelineResult,
    bench_settings,
    cpu_seconds,
    cpu_since,
    fresh_postgres,
    peak_rss_mb,
    server_cpu,
    settings_env,
    start_worker,
    wait_done,
    wait_ready,
)
from ecrm.campaigns.load import load_campaign
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, refresh_statistics, session_factory
from ecrm.profiles.models import Consent, Profile
from ecrm.push import vapid
from ecrm.push.encryption import encrypt
from ecrm.push.models import PushSubscription
from ecrm.push.vapid_jwt import VapidTokens
from ecrm.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "back_in_stock_push.yaml"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
LOCALES = ("en", "fa")
NAMES = {"en": "Emma", "fa": "سارا"}
KEY_POOL = 256  # browser key pairs, cycled: encryption costs the same whichever key it uses
SUBJECT = "mailto:bench@shop.example"
# about the size of the campaign's payload (title, body, icon, url, lang, report link)
PAYLOAD = ('{{"title":"Back in stock, Emma!","body":"Blue kettle is back. Only a few left.",'
           '"icon":"https://shop.example/icons/192.png","url":"https://shop.example/wishlist?utm_source=push&'
           'utm_campaign=back-in-stock-push","lang":"en","report":"http://127.0.0.1:8080/push/clicks/{i:038x}"}}')


def browser(i: int) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The private key and auth secret of deterministic browser `i` (subscription i uses i % KEY_POOL)."""
    key = ec.derive_private_key(i % KEY_POOL + 1_000_003, vapid.CURVE)
    return key, hashlib.sha256(f"auth{i % KEY_POOL}".encode()).digest()[:16]


def browser_keys(count: int = KEY_POOL) -> list[tuple[str, str]]:
    """(p256dh, auth) of `count` deterministic browsers, as subscriptions store them."""
    return [(vapid.encode_public(key.public_key()), vapid.b64url_encode(auth))
            for key, auth in map(browser, range(count))]


class PushServiceProcess:
    """`python -m ecrm.peers.push_service` on a free loopback port; SIGTERM collects its tally."""

    def __init__(self, stats_file: Path) -> None:
        self.stats_file = stats_file
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "ecrm.peers.push_service", "--port", "0",
                                         "--stats-file", str(stats_file)], stdout=subprocess.PIPE, cwd=ROOT, env=env)
        assert self.process.stdout is not None
        timer = threading.Timer(30, self.process.kill)
        timer.start()
        banner = self.process.stdout.readline()
        timer.cancel()
        if not banner:
            raise RuntimeError("the push service did not start")
        self.origin = "http://" + banner.decode().rsplit(" ", 1)[1].strip()
        self.ps = psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        stats: dict[str, Any] = json.loads(self.stats_file.read_text(encoding="utf-8"))
        return stats


def lost_and_duplicated(stats: dict[str, Any], n: int) -> tuple[int, int]:
    counts: dict[str, int] = stats.get("per_endpoint", {})
    lost = sum(1 for i in range(n) if counts.get(str(i), 0) == 0)
    duplicated = sum(c - 1 if c and k.isdigit() and int(k) < n else c for k, c in counts.items())
    return lost, duplicated


async def seed(database_url: str, n: int, origin: str) -> None:
    """Migrate a fresh database; n profiles (en/fa) who agreed to push, each with one subscription."""
    engine = create_engine(database_url)
    await migrate(engine)
    sessions, keys, now = session_factory(engine), browser_keys(), SYSTEM_CLOCK.now()
    for start in range(0, n, 5000):
        numbers = range(start, min(n, start + 5000))
        rows = [{"external_id": f"b{i}", "email": None, "first_name": NAMES[LOCALES[i % 2]], "locale": LOCALES[i % 2],
                 "time_zone": "UTC", "traits": {"wished_item": "Blue kettle"}, "created_at": now, "updated_at": now}
                for i in numbers]
        async with sessions.begin() as session:
            ids = (await session.scalars(insert(Profile).returning(Profile.id), rows)).all()
            await session.execute(insert(Consent), [{"profile_id": pid, "channel": "push", "state": "granted",
                                                     "source": "bench", "updated_at": now} for pid in ids])
            await session.execute(insert(PushSubscription), [
                {"profile_id": pid, "endpoint": f"{origin}/push/{i}", "p256dh": keys[i % KEY_POOL][0],
                 "auth": keys[i % KEY_POOL][1], "created_at": now} for pid, i in zip(ids, numbers, strict=True)])
    await refresh_statistics(sessions, "profiles", "consents", "push_subscriptions")
    await engine.dispose()


def push_settings(url: str, args: argparse.Namespace, keys: vapid.VapidKeys) -> tuple[Settings, dict[str, str]]:
    base = bench_settings(url, 25, args, REDIS_URL)
    push = base.push.model_copy(update={"vapid_public_key": keys.public_key, "subject": SUBJECT,
                                        "vapid_private_key": SecretStr(keys.private_key),
                                        "connections": args.push_connections})
    settings = base.model_copy(update={"push": push})
    env = {**settings_env(settings), "ECRM_PUSH__VAPID_PUBLIC_KEY": keys.public_key,
           "ECRM_PUSH__VAPID_PRIVATE_KEY": keys.private_key, "ECRM_PUSH__SUBJECT": SUBJECT,
           "ECRM_PUSH__CONNECTIONS": str(args.push_connections)}
    return settings, env


async def run_pipeline(args: argparse.Namespace, work: Path) -> PipelineResult:
    from arq import create_pool
    from arq.connections import RedisSettings

    from ecrm.campaigns.launch import create_run, enqueue_plan
    from ecrm.queue import ArqQueue

    service = PushServiceProcess(work / "push-pipeline.json")
    keys = vapid.new_key_pair()
    try:
        url = await fresh_postgres("ecrm_bench_push")
        await seed(url, args.n, service.origin)
        settings, env = push_settings(url, args, keys)
        redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
        await redis.flushdb()
        workers = [start_worker(env, work / f"push-worker{i}.log") for i in range(args.workers)]
        try:
            await wait_ready(work, args.workers, "push-worker")
            procs = [psutil.Process(w.pid) for w in workers]
            workers_before = [cpu_seconds([p]) for p in procs]
            servers_before = {name: server_cpu(name) for name in ("postgres", "redis-server")}
            service_before = service.cpu_seconds()
            engine = create_engine(url)
            launched = SYSTEM_CLOCK.now()
            spec = load_campaign(CAMPAIGN, settings)
            ref = await create_run(session_factory(engine), spec, str(CAMPAIGN))
            await enqueue_plan(ArqQueue(redis), ref, spec)
            async with asyncio.timeout(args.timeout):
                finished = await wait_done(engine, ref.run_id)
            seconds = (finished - launched).total_seconds()
            cpu = {f"worker{i}": cpu_seconds([p]) - workers_before[i] for i, p in enumerate(procs)}
            cpu |= {name.split("-")[0]: cpu_since(name, before) for name, before in servers_before.items()}
            rss = [peak_rss_mb(p) for p in procs]
            service_ms = (service.cpu_seconds() - service_before) * 1000 / args.n
            await engine.dispose()
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=30)
            await redis.aclose()
    finally:
        stats = service.stop()
    lost, duplicated = lost_and_duplicated(stats, args.n)
    return PipelineResult("push, postgresql + arq", args.n, seconds, {k: v * 1000 / args.n for k, v in cpu.items()},
                          rss, lost, duplicated, service_ms, {"refused": stats.get("refused", 0)})


def raw_ceiling(args: argparse.Namespace, work: Path) -> tuple[RawResult, float, tuple[int, int]]:
    """One ceiling run: (result, the push service's CPU ms per message, (lost, duplicated))."""
    service = PushServiceProcess(work / "push-raw.json")
    keys = vapid.new_key_pair()
    try:
        before = service.cpu_seconds()
        result = measure_ceiling(args.n, args.workers, args.push_connections, service.origin, keys)
        service_ms = (service.cpu_seconds() - before) * 1000 / args.n
    finally:
        stats = service.stop()
    return result, service_ms, lost_and_duplicated(stats, args.n)


def measure_ceiling(n: int, processes: int, connections: int, origin: str, keys: vapid.VapidKeys) -> RawResult:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[WorkerResult] = ctx.Queue()
    workers = [ctx.Process(target=_ceiling_worker, args=(index, n, processes, connections, origin, keys, ready, go,
                                                         results), daemon=True) for index in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _next(ready, workers)
        go.set()
        collected = [_next(results, workers) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
    return _summarise(collected, processes, connections)


def _ceiling_worker(index: int, n: int, processes: int, connections: int, origin: str, keys: vapid.VapidKeys,
                    ready: mp.Queue[int], go: Any, results: mp.Queue[WorkerResult]) -> None:
    pool, tokens = browser_keys(), VapidTokens(keys.private_key, keys.public_key, SUBJECT)
    requests = []
    for i in range(index, n, processes):
        p256dh, auth = pool[i % KEY_POOL]
        headers = {"TTL": "86400", "Urgency": "high", "Topic": "back-in-stock", "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "Authorization": tokens.header(origin)}
        requests.append((f"{origin}/push/{i}", encrypt(PAYLOAD.format(i=i).encode(), p256dh, auth), headers))

    def start_line() -> None:
        ready.put(index)
        if not go.wait(DEADLINE_S):
            raise TimeoutError("no start signal")

    results.put(_run(_post_all(requests, connections, start_line), use_uvloop=True))


async def _post_all(requests: list[tuple[str, bytes, dict[str, str]]], connections: int,
                    start_line: Callable[[], None]) -> WorkerResult:
    """The adapter's own aiohttp session (same connector and limit), `connections` requests in flight."""
    from ecrm.channels.push.webpush import WebPush

    adapter = WebPush(VapidTokens(*_throwaway()), connections)
    session = adapter.session
    await asyncio.to_thread(start_line)
    started, cpu_started = time.monotonic(), _cpu()
    pending = iter(requests)

    async def lane() -> int:
        errors = 0
        for url, body, headers in pending:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                errors += response.status != 201
        return errors

    errors = sum(await asyncio.gather(*(lane() for _ in range(connections))))
    finished, cpu_s = time.monotonic(), _cpu() - cpu_started
    await adapter.close()
    return WorkerResult(len(requests) - errors, errors, started, finished, cpu_s,
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _throwaway() -> tuple[str, str, str]:
    keys = vapid.new_key_pair()
    return keys.private_key, keys.public_key, SUBJECT


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encryption_ms(count: int = 2000) -> float:
    """CPU ms of one RFC 8291 encryption (new P-256 key, ECDH, HKDF, AES-128-GCM), here."""
    p256dh, auth = browser_keys(1)[0]
    payload = PAYLOAD.format(i=0).encode()
    started = time.process_time()
    for _ in range(count):
        encrypt(payload, p256dh, auth)
    return (time.process_time() - started) * 1000 / count


def report(result: PipelineResult, raw: RawResult, raw_service_ms: float, crypto_ms: float) -> str:
    rate, ours = result.messages / result.seconds, sum(result.cpu_ms.values())
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in result.cpu_ms.items())
    rss = ", ".join(f"{r:.0f}" for r in result.peak_rss_mb)
    raw_cpu = "/".join(f"{ms:.3f}" for ms in raw.cpu_ms_per_msg)
    return (f"{result.label}: {result.messages} messages in {result.seconds:.2f} s = {rate:,.0f} msg/s end to end; "
            f"raw ceiling {raw.msgs_per_s:,.0f} msg/s ({raw.processes} processes x {raw.connections} connections, "
            f"pre-built encrypted requests, client CPU ms/msg {raw_cpu}, push service {raw_service_ms:.3f}); "
            f"ratio {rate / raw.msgs_per_s:.0%}; CPU ms/msg: {cpu} (total {ours:.3f}, push service excluded: "
            f"{result.sink_ms:.3f}); of which encryption alone {crypto_ms:.3f} ms/msg; peak RSS per worker MB: {rss}; "
            f"lost {result.lost}, duplicated {result.duplicated}, refused by the service "
            f"{result.extra.get('refused', 0)}")


def median_ceiling(args: argparse.Namespace, work: Path) -> tuple[RawResult, float]:
    runs = []
    for _ in range(args.ceiling_runs):
        raw, service_ms, (lost, duplicated) = raw_ceiling(args, work)
        if lost or duplicated or raw.errors:
            raise RuntimeError(f"the raw ceiling lost {lost}, duplicated {duplicated}, {raw.errors} errors")
        print(f"raw push ceiling: {raw.messages} in {raw.seconds:.2f} s = {raw.msgs_per_s:,.0f} msg/s", flush=True)
        runs.append((raw, service_ms))
    runs.sort(key=lambda run: run[0].msgs_per_s)
    return runs[(len(runs) - 1) // 2]


def main(args: argparse.Namespace, work: Path) -> int:
    """`bench.send --channel push`: ceilings and pipeline, `--repeat` times; 1 if anything was lost or doubled."""
    crypto_ms = encryption_ms()
    ratios, failed = [], False
    for _ in range(args.repeat):
        raw, raw_service_ms = median_ceiling(args, work)
        result = asyncio.run(run_pipeline(args, work))
        print(report(result, raw, raw_service_ms, crypto_ms), flush=True)
        ratios.append(result.messages / result.seconds / raw.msgs_per_s)
        failed |= bool(result.lost or result.duplicated)
    if len(ratios) > 1:
        print(f"push: median ratio to the raw ceiling over {len(ratios)} runs {statistics.median(ratios):.0%}")
    return 1 if failed else 0

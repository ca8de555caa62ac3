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
import functools
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bench.ceiling import Clock, RawResult, WorkerResult, measure_in_processes, median_run, run_sender, wait_for_start
from bench.peers import PushServiceProcess, lost_and_duplicated
from bench.seeding import NAMES, seed_profiles
from bench.send import Kit, PipelineResult, bench_settings, run_postgres, settings_env
from ecrm.clock import SYSTEM_CLOCK
from ecrm.push import vapid
from ecrm.push.encryption import encrypt
from ecrm.push.models import PushSubscription
from ecrm.push.vapid_jwt import VapidTokens
from ecrm.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "back_in_stock_push.yaml"
LOCALES = ("en", "fa")
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


def push_tally(stats: dict[str, Any], n: int) -> tuple[int, int]:
    """Lost and duplicated notifications from the push service's per-endpoint counts (endpoint i is /push/i)."""
    return lost_and_duplicated(stats.get("per_endpoint", {}), {str(i) for i in range(n)})


async def seed(database_url: str, n: int, origin: str) -> None:
    """A fresh database with n profiles (en/fa) who agreed to push, each with one subscription."""
    keys = browser_keys()

    async def subscriptions(session: AsyncSession, ids: Sequence[int], numbers: range) -> None:
        now = SYSTEM_CLOCK.now()
        await session.execute(insert(PushSubscription), [
            {"profile_id": pid, "endpoint": f"{origin}/push/{i}", "p256dh": keys[i % KEY_POOL][0],
             "auth": keys[i % KEY_POOL][1], "created_at": now} for pid, i in zip(ids, numbers, strict=True)])

    await seed_profiles(database_url, n, "push", lambda i: {
        "external_id": f"b{i}", "email": None, "first_name": NAMES[LOCALES[i % 2]], "locale": LOCALES[i % 2],
        "traits": {"wished_item": "Blue kettle"}}, subscriptions, ("push_subscriptions",))


def push_settings(url: str, args: argparse.Namespace, redis_url: str | None) -> Settings:
    """The workers' settings, with a new VAPID key pair and `--push-connections` to the push service."""
    keys = vapid.new_key_pair()
    base = bench_settings(url, 25, args, redis_url)
    push = base.push.model_copy(update={"vapid_public_key": keys.public_key, "subject": SUBJECT,
                                        "vapid_private_key": SecretStr(keys.private_key),
                                        "connections": args.push_connections})
    return base.model_copy(update={"push": push})


def push_env(settings: Settings) -> dict[str, str]:
    push = settings.push
    assert push.vapid_public_key and push.vapid_private_key and push.subject  # push_settings sets them
    return {**settings_env(settings), "ECRM_PUSH__VAPID_PUBLIC_KEY": push.vapid_public_key,
            "ECRM_PUSH__VAPID_PRIVATE_KEY": push.vapid_private_key.get_secret_value(),
            "ECRM_PUSH__SUBJECT": push.subject, "ECRM_PUSH__CONNECTIONS": str(push.connections)}


def push_kit() -> Kit[PushServiceProcess]:
    return Kit(CAMPAIGN, lambda work, n: PushServiceProcess(work / "push-pipeline.json"),
               lambda url, n, service: seed(url, n, service.origin),
               lambda url, service, args, redis_url: push_settings(url, args, redis_url), push_env, push_tally,
               extra=lambda stats: {"refused": stats.get("refused", 0)}, label="push, postgresql + arq",
               database="ecrm_bench_push", logs="push-worker")


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
    return result, service_ms, push_tally(stats, args.n)


def measure_ceiling(n: int, processes: int, connections: int, origin: str, keys: vapid.VapidKeys) -> RawResult:
    return measure_in_processes(_ceiling_worker, (n, processes, connections, origin, keys), processes, connections)


def _ceiling_worker(index: int, n: int, processes: int, connections: int, origin: str, keys: vapid.VapidKeys,
                    ready: Any, go: Any, results: Any) -> None:
    pool, tokens = browser_keys(), VapidTokens(keys.private_key, keys.public_key, SUBJECT)
    requests = []
    for i in range(index, n, processes):
        p256dh, auth = pool[i % KEY_POOL]
        headers = {"TTL": "86400", "Urgency": "high", "Topic": "back-in-stock", "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "Authorization": tokens.header(origin)}
        requests.append((f"{origin}/push/{i}", encrypt(PAYLOAD.format(i=i).encode(), p256dh, auth), headers))
    results.put(run_sender(_post_all(requests, connections, functools.partial(wait_for_start, index, ready, go))))


async def _post_all(requests: list[tuple[str, bytes, dict[str, str]]], connections: int,
                    start_line: Callable[[], None]) -> WorkerResult:
    """The adapter's own aiohttp session (same connector and limit), `connections` requests in flight."""
    from ecrm.channels.push.webpush import WebPush

    adapter = WebPush(VapidTokens(*_throwaway()), connections)
    session = adapter.session
    await asyncio.to_thread(start_line)
    clock, pending = Clock(), iter(requests)

    async def lane() -> int:
        errors = 0
        for url, body, headers in pending:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                errors += response.status != 201
        return errors

    errors = sum(await asyncio.gather(*(lane() for _ in range(connections))))
    clock.stop()
    await adapter.close()
    return clock.result(len(requests) - errors, errors)


def _throwaway() -> tuple[str, str, str]:
    keys = vapid.new_key_pair()
    return keys.private_key, keys.public_key, SUBJECT


def encryption_ms(count: int = 2000) -> float:
    """CPU ms of one RFC 8291 encryption (new P-256 key, ECDH, HKDF, AES-128-GCM), here."""
    p256dh, auth = browser_keys(1)[0]
    payload = PAYLOAD.format(i=0).encode()
    started = time.process_time()
    for _ in range(count):
        encrypt(payload, p256dh, auth)
    return (time.process_time() - started) * 1000 / count


def report(result: PipelineResult, raw: RawResult, raw_service_ms: float, crypto_ms: float) -> str:
    rate, ours, cpu, rss = result.rate, result.cpu_total_ms, result.cpu_text(), result.rss_text()
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
    return median_run(runs, lambda run: run[0].msgs_per_s)[0]


def main(args: argparse.Namespace, work: Path) -> int:
    """`bench.send --channel push`: ceilings and pipeline, `--repeat` times; 1 if anything was lost or doubled."""
    crypto_ms = encryption_ms()
    ratios, failed = [], False
    for _ in range(args.repeat):
        raw, raw_service_ms = median_ceiling(args, work)
        result = asyncio.run(run_postgres(args, work, push_kit()))
        print(report(result, raw, raw_service_ms, crypto_ms), flush=True)
        ratios.append(result.rate / raw.msgs_per_s)
        failed |= bool(result.lost or result.duplicated)
    if len(ratios) > 1:
        print(f"push: median ratio to the raw ceiling over {len(ratios)} runs {statistics.median(ratios):.0%}")
    return 1 if failed else 0

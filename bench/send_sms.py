"""`python -m bench.send --channel sms`: N profiles with a phone and SMS consent, sent
`campaigns/welcome_sms.yaml` by `--workers` `ecrm worker` processes on PostgreSQL (arq on real
Redis) to the local Twilio peer (`python -m ecrm.peers.twilio_sink`), beside a raw ceiling
measured in the same run.

The raw ceiling posts N pre-built messages (the campaign's three locales' texts, no database,
queue or rendering) through the same HTTP client, ecrm's `TwilioSms` adapter, from as many
processes as there are workers, each with the same connection count, with `send_many`'s
bounded concurrency; it is measured `--ceiling-runs` times and the median taken. The pipeline's
clock runs from the launch to the run marked done. Printed: msg/s end to end, the ceiling, the
ratio, CPU ms per message per process (workers, PostgreSQL, Redis; the peer's apart), peak RSS per
worker, and lost / duplicated from the peer's per-number tally.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import insert

from bench.raw_ceiling import lost_and_duplicated
from bench.send import Kit, PipelineResult, run_postgres, settings_env
from ecrm import loop
from ecrm.channels.base import send_many
from ecrm.channels.sms.twilio import TwilioSms
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, refresh_statistics, session_factory
from ecrm.messages import OutgoingSms
from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN
from ecrm.profiles.models import Consent, Profile
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.render.sms import SmsComposer, status_callback_base
from ecrm.settings import Settings, TwilioSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "welcome_sms.yaml"
FROM = "+15005550006"
PUBLIC_URL = "https://crm.shop.example"
LOCALES = ("en", "fa", "th")
NAMES = {"en": "Emma", "fa": "سارا", "th": "สมชาย"}


def bench_phone(i: int) -> str:
    return f"+1{2_000_000_000 + i}"


async def seed_sms(database_url: str, n: int) -> None:
    """Migrate a fresh database and insert n profiles (en/fa/th) with a phone who agreed to SMS."""
    engine = create_engine(database_url)
    await migrate(engine)
    sessions, now = session_factory(engine), SYSTEM_CLOCK.now()
    for start in range(0, n, 5000):
        rows = [{"external_id": f"b{i}", "phone": bench_phone(i), "first_name": NAMES[LOCALES[i % 3]],
                 "locale": LOCALES[i % 3], "time_zone": "UTC", "traits": {"points": i % 5000},
                 "created_at": now, "updated_at": now} for i in range(start, min(n, start + 5000))]
        async with sessions.begin() as session:
            ids = (await session.scalars(insert(Profile).returning(Profile.id), rows)).all()
            await session.execute(insert(Consent), [{"profile_id": pid, "channel": "sms", "state": "granted",
                                                     "source": "bench", "updated_at": now} for pid in ids])
    await refresh_statistics(sessions, "profiles", "consents")
    await engine.dispose()


class TwilioSinkProcess:
    """``python -m ecrm.peers.twilio_sink`` on a free loopback port, stopped with SIGTERM for its tally."""

    def __init__(self, stats_file: Path) -> None:
        self.stats_file = stats_file
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "ecrm.peers.twilio_sink", "--port", "0",
                                         "--stats-file", str(stats_file)], stdout=subprocess.PIPE, cwd=ROOT, env=env)
        assert self.process.stdout is not None
        timer = threading.Timer(30, self.process.kill)
        timer.start()
        banner = self.process.stdout.readline()
        timer.cancel()
        if not banner:
            raise RuntimeError("the Twilio peer did not start")
        self.port = int(banner.rsplit(b":", 1)[1])
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


def twilio_fields(port: int, connections: int) -> dict[str, Any]:
    return {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": FROM,
            "api_url": f"http://127.0.0.1:{port}", "connections": connections}


def sms_settings(database_url: str, port: int, args: argparse.Namespace, redis_url: str | None) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, database_url=database_url, redis_url=redis_url,
                         templates_dir=ROOT / "templates", public_url=PUBLIC_URL,
                         twilio=twilio_fields(port, args.connections), send={"batch_size": args.batch})


def sms_env(settings: Settings) -> dict[str, str]:
    twilio = settings.twilio
    return {**settings_env(settings), "ECRM_PUBLIC_URL": settings.public_url,
            "ECRM_TWILIO__ACCOUNT_SID": twilio.account_sid, "ECRM_TWILIO__AUTH_TOKEN": AUTH_TOKEN,
            "ECRM_TWILIO__FROM_NUMBER": twilio.from_number or "", "ECRM_TWILIO__API_URL": twilio.api_url,
            "ECRM_TWILIO__CONNECTIONS": str(twilio.connections)}


def sms_tally(stats: dict[str, Any], n: int) -> tuple[int, int]:
    return lost_and_duplicated(stats.get("per_recipient", {}), {bench_phone(i) for i in range(n)})


def sms_kit() -> Kit:
    return Kit(CAMPAIGN, seed_sms, lambda work, n: TwilioSinkProcess(work / "twilio-pg.json"), sms_settings,
               sms_env, sms_tally)


def campaign_texts() -> dict[str, OutgoingSms]:
    """The campaign's text in each locale, rendered once (the ceiling renders nothing per message)."""
    settings = load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates",
                             public_url=PUBLIC_URL)
    composer = SmsComposer(settings, TemplateCatalog(settings.templates_dir), "welcome", "welcome_sms")
    return {locale: composer.compose(sample_recipient(locale, first_name=NAMES[locale], traits={"points": 1234}))
            for locale in LOCALES}


def prebuilt(first: int, count: int) -> list[OutgoingSms | None]:
    texts, callback = campaign_texts(), status_callback_base(PUBLIC_URL)
    return [OutgoingSms(bench_phone(i), texts[LOCALES[i % 3]].body, texts[LOCALES[i % 3]].parts, f"{callback}{i + 1}")
            for i in range(first, first + count)]


def _ceiling_worker(first: int, count: int, port: int, connections: int, ready: Any, go: Any, out: Any) -> None:
    messages = prebuilt(first, count)
    channel = TwilioSms(TwilioSettings.model_validate(twilio_fields(port, connections)), AUTH_TOKEN)

    async def run() -> tuple[float, float, float, int]:
        ready.put(first)
        go.wait()
        cpu, started = time.process_time(), time.time()
        outcomes = await send_many(channel, messages)
        ended = time.time()
        await channel.close()
        return started, ended, time.process_time() - cpu, sum(1 for o in outcomes if hasattr(o, "provider"))

    out.put(loop.run(run()))


def raw_ceiling(n: int, processes: int, connections: int, work: Path) -> tuple[float, float, int]:
    """msg/s and client CPU ms per message of N pre-built messages through `TwilioSms`, and how many
    the peer accepted."""
    sink = TwilioSinkProcess(work / "twilio-raw.json")
    context = mp.get_context("spawn")
    ready, go, out = context.Queue(), context.Event(), context.Queue()
    share = -(-n // processes)
    workers = [context.Process(target=_ceiling_worker, args=(i * share, min(share, n - i * share), sink.port,
                                                             connections, ready, go, out)) for i in range(processes)]
    try:
        for worker in workers:
            worker.start()
        for _ in workers:  # every process has imported and built its messages
            ready.get(timeout=120)
        go.set()
        results = [out.get(timeout=600) for _ in workers]
        for worker in workers:
            worker.join()
    finally:
        stats = sink.stop()
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    sent = sum(r[3] for r in results)
    if sent != n or stats["accepted"] != n:
        raise RuntimeError(f"the raw ceiling sent {sent} of {n} (the peer accepted {stats['accepted']})")
    return n / seconds, sum(r[2] for r in results) * 1000 / n, sent


def main_sms(args: argparse.Namespace) -> int:
    if "postgresql" not in args.db:
        print("--channel sms runs on PostgreSQL only", file=sys.stderr)
        return 2
    args.connections = args.connections or 32
    failed = False
    kept = contextlib.nullcontext(tempfile.mkdtemp(prefix="ecrm-bench-sms-")) if args.keep else None
    with kept or tempfile.TemporaryDirectory(prefix="ecrm-bench-sms-") as tmp:
        work = Path(tmp)
        if args.keep:
            print(f"worker logs and peer tallies are kept in {tmp}", flush=True)
        for _ in range(args.repeat):
            ceilings = sorted(raw_ceiling(args.n, args.workers, args.connections, work)
                              for _ in range(args.ceiling_runs))
            rate, cpu_ms, _ = ceilings[(len(ceilings) - 1) // 2]
            print(f"raw ceiling ({args.workers} process(es) x {args.connections} connections, ecrm's TwilioSms "
                  f"adapter on aiohttp, pre-built messages, local Twilio peer): median of {len(ceilings)} "
                  f"({', '.join(f'{c[0]:,.0f}' for c in ceilings)}) = {rate:,.0f} msg/s, client CPU "
                  f"{cpu_ms:.3f} ms/msg", flush=True)
            result = asyncio.run(run_postgres(args, work, sms_kit()))
            print(sms_report(result, rate), flush=True)
            failed |= bool(result.lost or result.duplicated)
    return 1 if failed else 0


def sms_report(result: PipelineResult, ceiling: float) -> str:
    rate = result.messages / result.seconds
    ours = sum(result.cpu_ms.values())
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in result.cpu_ms.items())
    rss = ", ".join(f"{r:.0f}" for r in result.peak_rss_mb)
    return (f"sms {result.label}: {result.messages} messages in {result.seconds:.2f} s = {rate:,.0f} msg/s end to "
            f"end; raw ceiling {ceiling:,.0f} msg/s; ratio {rate / ceiling:.0%}; CPU ms/msg: {cpu} (total "
            f"{ours:.3f}, peer excluded; peer {result.sink_ms:.3f}); peak RSS per worker MB: {rss}; "
            f"lost {result.lost}, duplicated {result.duplicated}")

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
import functools
from pathlib import Path
from typing import Any

from bench.ceiling import Clock, RawResult, WorkerResult, measure_in_processes, median_run, run_sender, wait_for_start
from bench.peers import TwilioSinkProcess, lost_and_duplicated
from bench.seeding import LOCALES, NAMES, seed_profiles
from bench.send import Kit, PipelineResult, run_postgres, settings_env
from ecrm.channels.base import send_many
from ecrm.channels.sms.twilio import TwilioSms
from ecrm.messages import OutgoingSms
from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.render.sms import SmsComposer, status_callback_base
from ecrm.settings import Settings, TwilioSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "welcome_sms.yaml"
FROM = "+15005550006"
PUBLIC_URL = "https://crm.shop.example"


def bench_phone(i: int) -> str:
    return f"+1{2_000_000_000 + i}"


async def seed_sms(database_url: str, n: int) -> None:
    """A fresh database with n profiles (en/fa/th) with a phone who agreed to SMS."""
    await seed_profiles(database_url, n, "sms", lambda i: {
        "external_id": f"b{i}", "phone": bench_phone(i), "first_name": NAMES[LOCALES[i % 3]],
        "locale": LOCALES[i % 3], "traits": {"points": i % 5000}})


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


def sms_kit() -> Kit[TwilioSinkProcess]:
    return Kit(CAMPAIGN, lambda work, n: TwilioSinkProcess(work / "twilio-pg.json"),
               lambda url, n, sink: seed_sms(url, n),
               lambda url, sink, args, redis_url: sms_settings(url, sink.port, args, redis_url), sms_env, sms_tally)


def campaign_texts() -> dict[str, OutgoingSms]:
    """The campaign's text in each locale, rendered once (the ceiling renders nothing per message)."""
    settings = load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates",
                             public_url=PUBLIC_URL)
    composer = SmsComposer(settings, TemplateCatalog(settings.templates_dir), "welcome", "welcome_sms")
    return {locale: composer.compose(sample_recipient(locale, first_name=NAMES[locale], traits={"points": 1234}))
            for locale in LOCALES}


def prebuilt(numbers: range) -> list[OutgoingSms | None]:
    texts, callback = campaign_texts(), status_callback_base(PUBLIC_URL)
    return [OutgoingSms(bench_phone(i), texts[LOCALES[i % 3]].body, texts[LOCALES[i % 3]].parts, f"{callback}{i + 1}")
            for i in numbers]


def _ceiling_worker(index: int, n: int, processes: int, port: int, connections: int, ready: Any, go: Any,
                    results: Any) -> None:
    messages = prebuilt(range(index, n, processes))
    channel = TwilioSms(TwilioSettings.model_validate(twilio_fields(port, connections)), AUTH_TOKEN)

    async def run() -> WorkerResult:
        await asyncio.to_thread(functools.partial(wait_for_start, index, ready, go))
        clock = Clock()
        outcomes = await send_many(channel, messages)
        clock.stop()
        await channel.close()
        sent = sum(1 for o in outcomes if hasattr(o, "provider"))
        return clock.result(sent, len(messages) - sent)

    results.put(run_sender(run()))


def raw_ceiling(n: int, processes: int, connections: int, work: Path) -> RawResult:
    """N pre-built messages through `TwilioSms` from `processes` processes; RuntimeError unless
    the peer accepted each of them."""
    sink = TwilioSinkProcess(work / "twilio-raw.json")
    try:
        raw = measure_in_processes(_ceiling_worker, (n, processes, sink.port, connections), processes, connections)
    finally:
        stats = sink.stop()
    if raw.messages != n or stats["accepted"] != n:
        raise RuntimeError(f"the raw ceiling sent {raw.messages} of {n} (the peer accepted {stats['accepted']})")
    return raw


def main(args: argparse.Namespace, work: Path) -> int:
    """`bench.send --channel sms`: ceilings and pipeline, `--repeat` times; 1 if anything was lost or doubled."""
    failed = False
    for _ in range(args.repeat):
        raw, ceilings = median_run([raw_ceiling(args.n, args.workers, args.connections, work)
                                    for _ in range(args.ceiling_runs)], lambda r: r.msgs_per_s)
        print(f"raw ceiling ({args.workers} process(es) x {args.connections} connections, ecrm's TwilioSms "
              f"adapter on aiohttp, pre-built messages, local Twilio peer): median of {len(ceilings)} "
              f"({', '.join(f'{c.msgs_per_s:,.0f}' for c in ceilings)}) = {raw.msgs_per_s:,.0f} msg/s, client CPU "
              f"{raw.client_cpu_ms:.3f} ms/msg", flush=True)
        result = asyncio.run(run_postgres(args, work, sms_kit()))
        print(sms_report(result, raw.msgs_per_s), flush=True)
        failed |= bool(result.lost or result.duplicated)
    return 1 if failed else 0


def sms_report(result: PipelineResult, ceiling: float) -> str:
    rate = result.rate
    return (f"sms {result.label}: {result.messages} messages in {result.seconds:.2f} s = {rate:,.0f} msg/s end to "
            f"end; raw ceiling {ceiling:,.0f} msg/s; ratio {rate / ceiling:.0%}; CPU ms/msg: {result.cpu_text()} "
            f"(total {result.cpu_total_ms:.3f}, peer excluded; peer {result.sink_ms:.3f}); peak RSS per worker MB: "
            f"{result.rss_text()}; lost {result.lost}, duplicated {result.duplicated}")

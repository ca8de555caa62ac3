"""Send benchmark: N synthetic profiles through the real pipeline to the lean local SMTP sink.

    python -m bench.send [-n 20000] [--db postgresql sqlite] [--workers 2] [--connections 8]
    python -m bench.send --channel sms [-n 100000] [--workers 2] [--connections 32]   (bench/send_sms.py)

For each database it prints one line: messages, seconds, msg/s end to end, two raw transport
ceilings measured in the same run, just before the pipeline, and the ratio to each (the same
number of pre-built messages from as many processes and connections as the workers use, see
`bench/raw_ceiling.py`: through the same SMTP client, ecrm's `SmtpEmail` adapter, and through an
independent asyncio-streams client with campaign-sized messages; each measured `--ceiling-runs`
times, default 3, and the median taken), CPU ms per message per process (and the sink's), how
busy the cores were, peak RSS per worker, and lost / duplicated counts from the sink's
per-recipient tally (checked every run). The sink also hashes a sample of bodies: the ceilings'
must be what their client built, the pipeline's non-empty, distinct and of a campaign email's
size, or the run stops with `BodyCheckError`. `--sendmail-ceiling` also measures plain
aiosmtplib `SMTP.sendmail` (four round trips per message, what the issue's "about 8,000 msg/s"
assumed) and prints the ratio to it.

- postgresql: arq on real Redis with `--workers` `ecrm worker` processes; the clock runs from
  the launch (run created, plan enqueued) to the moment the worker that recorded the run's
  last delivery row marked the run done (its `finished_at`).
- sqlite: the demo's path, `ecrm campaign launch` with the in-process queue, in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import asyncpg
import psutil
from sqlalchemy import select

from bench.ceiling import RawResult, median_run
from bench.peers import PeerProcess, SinkProcess, child_env, lost_and_duplicated
from bench.raw_ceiling import (
    campaign_sizes,
    check_campaign_bodies,
    check_sent_bodies,
    measure_raw_ceiling,
    message_builder,
    plausible_sizes,
    sample_every,
)
from bench.seeding import LOCALES, NAMES, seed_profiles
from ecrm import heap, loop
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.models import CampaignRun
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, session_factory
from ecrm.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "welcome.yaml"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def bench_address(i: int) -> str:
    return f"b{i:07d}@bench.example"


@dataclass
class PipelineResult:
    label: str
    messages: int
    seconds: float
    cpu_ms: dict[str, float]
    peak_rss_mb: list[float]
    lost: int
    duplicated: int
    sink_ms: float = 0.0  # the sink's CPU ms per message, to tell how busy the host was
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Messages per second end to end."""
        return self.messages / self.seconds

    @property
    def cpu_total_ms(self) -> float:
        """CPU ms per message of every process measured (the sink's apart)."""
        return sum(self.cpu_ms.values())

    def cpu_text(self) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in self.cpu_ms.items())

    def rss_text(self) -> str:
        return ", ".join(f"{r:.0f}" for r in self.peak_rss_mb)


def bench_settings(database_url: str, port: int, args: argparse.Namespace, redis_url: str | None) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, database_url=database_url, redis_url=redis_url,
                         templates_dir=ROOT / "templates",
                         smtp={"port": port, "connections": args.connections},
                         send={"batch_size": args.batch})


def settings_env(settings: Settings) -> dict[str, str]:
    return {**child_env(), "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": settings.database_url,
            "ECRM_REDIS_URL": settings.redis_url or "", "ECRM_TEMPLATES_DIR": str(settings.templates_dir),
            "ECRM_SMTP__PORT": str(settings.smtp.port), "ECRM_SMTP__CONNECTIONS": str(settings.smtp.connections),
            "ECRM_SEND__BATCH_SIZE": str(settings.send.batch_size)}


async def seed(database_url: str, n: int) -> None:
    """A fresh database with n profiles (en/fa/th) who agreed to email."""
    await seed_profiles(database_url, n, "email", lambda i: {
        "external_id": f"b{i}", "email": bench_address(i), "first_name": NAMES[LOCALES[i % 3]],
        "locale": LOCALES[i % 3], "traits": {"points": i % 5000}})


async def fresh_postgres(name: str) -> str:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def server_processes(name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(name)]


def server_cpu(name: str) -> dict[int, float]:
    """CPU seconds per live process of a server (PostgreSQL forks one per connection)."""
    return {p.pid: cpu_seconds([p]) for p in server_processes(name)}


def cpu_since(name: str, before: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in server_cpu(name).items())


def peak_rss_mb(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tally(stats: dict[str, Any], n: int) -> tuple[int, int]:
    """Lost and duplicated messages, once the sampled bodies pass ``check_campaign_bodies`` (it raises)."""
    check_campaign_bodies(stats, sample_every(n), plausible_sizes(campaign_sizes()))
    return lost_and_duplicated(stats.get("per_recipient", {}), {bench_address(i) for i in range(n)})


P = TypeVar("P", bound=PeerProcess)


@dataclass(frozen=True)
class Kit(Generic[P]):
    """What a pipeline run on PostgreSQL needs that differs per channel: the campaign, the peer
    that stands in for the provider (started first: the profiles may need its address), the
    profiles the campaign reaches, the workers' settings, how the peer's tally tells lost and
    duplicated messages, and what else of the tally the report shows."""

    campaign: Path
    sink: Callable[[Path, int], P]
    seed: Callable[[str, int, P], Awaitable[None]]
    settings: Callable[[str, P, argparse.Namespace, str | None], Settings]
    env: Callable[[Settings], dict[str, str]]
    tally: Callable[[dict[str, Any], int], tuple[int, int]]
    extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda stats: {}
    label: str = "postgresql + arq"
    database: str = "ecrm_bench"
    logs: str = "worker"  # the workers' log files' prefix


def email_kit() -> Kit[SinkProcess]:
    return Kit(CAMPAIGN, lambda work, n: SinkProcess(work / "sink-pg.json", sample_every(n)),
               lambda url, n, sink: seed(url, n),
               lambda url, sink, args, redis_url: bench_settings(url, sink.port, args, redis_url),
               settings_env, tally)


@dataclass(frozen=True)
class Timed:
    """What the clock and the process counters saw of one pipeline run."""

    seconds: float
    cpu_s: dict[str, float]
    peak_rss_mb: list[float]
    sink_cpu_s: float


async def run_postgres(args: argparse.Namespace, work: Path, kit: Kit[Any] | None = None) -> PipelineResult:
    """Seed, launch the campaign to `--workers` `ecrm worker` processes and time it to done."""
    kit = kit or email_kit()
    sink = kit.sink(work, args.n)
    try:
        url = await fresh_postgres(kit.database)
        await kit.seed(url, args.n, sink)
        timed = await launch_and_time(args, work, kit, kit.settings(url, sink, args, REDIS_URL), sink)
    finally:
        stats = sink.stop()
    lost, duplicated = kit.tally(stats, args.n)
    return PipelineResult(kit.label, args.n, timed.seconds, {k: v * 1000 / args.n for k, v in timed.cpu_s.items()},
                          timed.peak_rss_mb, lost, duplicated, timed.sink_cpu_s * 1000 / args.n, kit.extra(stats))


async def launch_and_time(args: argparse.Namespace, work: Path, kit: Kit[Any], settings: Settings,
                          sink: PeerProcess) -> Timed:
    from arq import create_pool
    from arq.connections import RedisSettings

    from ecrm.campaigns.launch import create_run, enqueue_plan
    from ecrm.queue import ArqQueue

    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    await redis.flushdb()
    workers = [start_worker(kit.env(settings), work / f"{kit.logs}{i}.log") for i in range(args.workers)]
    try:
        await wait_ready(work, args.workers, kit.logs)
        procs = [psutil.Process(w.pid) for w in workers]
        workers_before = [cpu_seconds([p]) for p in procs]
        servers_before = {name: server_cpu(name) for name in ("postgres", "redis-server")}
        engine = create_engine(settings.database_url)
        sink_before = sink.cpu_seconds()
        launched = SYSTEM_CLOCK.now()
        spec = load_campaign(kit.campaign, settings)
        ref = await create_run(session_factory(engine), spec, str(kit.campaign))
        await enqueue_plan(ArqQueue(redis), ref, spec)
        async with asyncio.timeout(args.timeout):
            finished = await wait_done(engine, ref.run_id)
        seconds = (finished - launched).total_seconds()
        cpu = {f"worker{i}": (cpu_seconds([p]) - workers_before[i]) for i, p in enumerate(procs)}
        cpu |= {name.split("-")[0]: cpu_since(name, before) for name, before in servers_before.items()}
        timed = Timed(seconds, cpu, [peak_rss_mb(p) for p in procs], sink.cpu_seconds() - sink_before)
        await engine.dispose()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        await redis.aclose()
    return timed


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ecrm", "-v", "worker", "--dev"], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def workers_started(work: Path, prefix: str = "worker") -> int:
    return sum("Starting worker" in p.read_text(errors="replace") for p in work.glob(f"{prefix}*.log"))


async def wait_ready(work: Path, count: int, prefix: str = "worker") -> None:
    async with asyncio.timeout(60):
        while True:
            if await asyncio.to_thread(workers_started, work, prefix) >= count:
                return
            await asyncio.sleep(0.05)


async def wait_done(engine: Any, run_id: int) -> datetime:
    """When the run was marked done (the worker's clock, this host's), polled a few times a
    second: polling every few milliseconds would take CPU from the run it measures."""
    query = select(CampaignRun.status, CampaignRun.finished_at).where(CampaignRun.id == run_id)
    while True:
        async with engine.connect() as connection:
            status, finished = (await connection.execute(query)).one()
        if status == "done":
            return cast(datetime, finished)
        await asyncio.sleep(0.25)


def run_sqlite(args: argparse.Namespace, work: Path) -> PipelineResult:
    db = work / "bench.db"
    db.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(seed(url, args.n))
    sink = SinkProcess(work / "sink-sqlite.json", sample_every(args.n))
    settings = bench_settings(url, sink.port, args, None)
    sink_before = sink.cpu_seconds()
    try:
        out = subprocess.run([sys.executable, "-m", "bench.send", "--child-launch"], env=settings_env(settings),
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        sink_ms = (sink.cpu_seconds() - sink_before) * 1000 / args.n
    finally:
        stats = sink.stop()
    child = json.loads(out.strip().splitlines()[-1])
    lost, duplicated = tally(stats, args.n)
    return PipelineResult("sqlite + in-process", args.n, child["seconds"],
                          {"launcher": child["cpu_s"] * 1000 / args.n}, [child["peak_rss_mb"]], lost, duplicated,
                          sink_ms)


def child_launch() -> None:
    """In a fresh process: `ecrm campaign launch` with the in-process queue, timed from inside."""
    import resource

    from ecrm.local import launch_in_process

    settings = load_settings()
    spec = load_campaign(CAMPAIGN, settings)
    heap.settle()  # as `ecrm campaign launch` does before sending in its own process
    cpu0, started = time.process_time(), time.perf_counter()
    loop.run(launch_in_process(settings, spec, str(CAMPAIGN)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_rss_mb": rss}))


def report(result: PipelineResult, raw: RawResult, independent: RawResult) -> str:
    rate, ours = result.rate, result.cpu_total_ms
    raw_rate, independent_rate = raw.msgs_per_s, independent.msgs_per_s
    busy = (ours + result.sink_ms) * rate / 1000 / (os.cpu_count() or 1)
    return (f"{result.label}: {result.messages} messages in {result.seconds:.2f} s = {rate:,.0f} msg/s end to end; "
            f"raw {raw_rate:,.0f} msg/s; ratio {rate / raw_rate:.0%}; independent client's raw "
            f"{independent_rate:,.0f} msg/s; ratio {rate / independent_rate:.0%}; CPU ms/msg: {result.cpu_text()} "
            f"(total {ours:.3f}, sink excluded; sink {result.sink_ms:.3f}); cores busy {busy:.0%}; "
            f"peak RSS per worker MB: {result.rss_text()}; "
            f"lost {result.lost}, duplicated {result.duplicated}")


CLIENTS = {
    "adapter": "ecrm's SMTP adapter (aiosmtplib session set-up, RFC 2920 pipelining, one round trip per message)",
    "independent": "an independent client on plain asyncio streams (RFC 2920 groups, one round trip per message, "
                   "campaign-sized messages)",
    "sendmail": "plain aiosmtplib SMTP.sendmail (four round trips per message)",
}


def median_ceiling(args: argparse.Namespace, work: Path, processes: int, client: str = "adapter") -> RawResult:
    """The raw ceiling measured `--ceiling-runs` times back to back; the run with the median
    rate (`median_run`)."""
    chosen, runs = median_run([raw_ceiling(args, work, processes, client) for _ in range(args.ceiling_runs)],
                              lambda r: r.msgs_per_s)
    if len(runs) > 1:
        rates = ", ".join(f"{r.msgs_per_s:,.0f}" for r in runs)
        print(f"raw ceiling ({client}): median of {len(runs)} runs ({rates} msg/s): {chosen.msgs_per_s:,.0f} msg/s",
              flush=True)
    return chosen


def raw_ceiling(args: argparse.Namespace, work: Path, processes: int, client: str = "adapter") -> RawResult:
    """One ceiling run, whose sampled bodies must be what ``client`` built (``check_sent_bodies`` raises)."""
    sizes = campaign_sizes() if client == "independent" else ()
    every = sample_every(args.n)
    sink = SinkProcess(work / f"sink-raw-{processes}-{client}.json", every)
    try:
        raw = measure_raw_ceiling(args.n, processes, args.connections, "127.0.0.1", sink.port, client=client,
                                  sizes=sizes)
    finally:
        stats = sink.stop()
    check_sent_bodies(stats, every, message_builder(client, sizes))
    print(f"raw ceiling ({processes} process(es) x {args.connections} connections, {CLIENTS[client]}, pre-built "
          f"messages, lean sink ecrm.peers.smtp_sink): {raw.messages} in {raw.seconds:.2f} s = "
          f"{raw.msgs_per_s:,.0f} msg/s", flush=True)
    return raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.send", description=__doc__.split("\n")[0])
    parser.add_argument("--channel", choices=["email", "sms", "push"], default="email",
                        help="sms: to the local Twilio peer (bench/send_sms.py); push: to the local push service "
                             "(bench/push.py); both on PostgreSQL only")
    parser.add_argument("-n", type=int, default=20_000, help="profiles / messages (default 20000)")
    parser.add_argument("--db", nargs="+", choices=["postgresql", "sqlite"], default=["postgresql", "sqlite"])
    parser.add_argument("--workers", type=int, default=2, help="ecrm worker processes on PostgreSQL")
    parser.add_argument("--connections", type=int, default=None,
                        help="connections per process (SMTP, default 8; Twilio HTTP, default 32)")
    parser.add_argument("--push-connections", type=int, default=32,
                        help="HTTP connections per process to the push service (--channel push)")
    parser.add_argument("--batch", type=int, default=1000, help="recipients per send job")
    parser.add_argument("--repeat", type=int, default=1, help="runs per database; prints the median ratio")
    parser.add_argument("--ceiling-runs", type=int, default=3,
                        help="raw ceiling measures before each pipeline run; the median one is used")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--sendmail-ceiling", action="store_true",
                        help="also measure plain aiosmtplib sendmail and print the ratio to it")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs and sink tallies")
    parser.add_argument("--child-launch", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Ceilings:
    """The raw ceilings one pipeline run is compared with: ecrm's adapter, the independent client
    (each the median of `--ceiling-runs`), and plain aiosmtplib sendmail if asked for."""

    adapter: RawResult
    independent: RawResult
    sendmail: RawResult | None


def measure(db: str, args: argparse.Namespace, work: Path) -> tuple[PipelineResult, Ceilings]:
    """One set of figures for one database: the raw ceilings, then the pipeline, back to back."""
    processes = args.workers if db == "postgresql" else 1
    adapter = median_ceiling(args, work, processes)
    independent = median_ceiling(args, work, processes, "independent")
    result = asyncio.run(run_postgres(args, work)) if db == "postgresql" else run_sqlite(args, work)
    plain = raw_ceiling(args, work, processes, "sendmail") if args.sendmail_ceiling else None
    return result, Ceilings(adapter, independent, plain)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_launch:
        child_launch()
        return 0
    if args.channel == "sms" and "postgresql" not in args.db:
        print("--channel sms runs on PostgreSQL only", file=sys.stderr)
        return 2
    args.connections = args.connections or (32 if args.channel == "sms" else 8)
    failed = False
    prefix = "ecrm-bench-sms-" if args.channel == "sms" else "ecrm-bench-"
    kept = contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix)) if args.keep else None
    with kept or tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        if args.keep:
            print(f"worker logs and peer tallies are kept in {tmp}", flush=True)
        if args.channel == "sms":
            from bench import send_sms

            return send_sms.main(args, Path(tmp))
        if args.channel == "push":
            from bench import push

            return push.main(args, Path(tmp))
        for db in args.db:
            ratios: dict[str, list[float]] = {"adapter": [], "independent": []}
            for _ in range(args.repeat):
                result, ceilings = measure(db, args, Path(tmp))
                print(report(result, ceilings.adapter, ceilings.independent), flush=True)
                rate = result.rate
                if ceilings.sendmail is not None:
                    print(f"{result.label}: ratio to plain aiosmtplib sendmail "
                          f"{rate / ceilings.sendmail.msgs_per_s:.0%}", flush=True)
                ratios["adapter"].append(rate / ceilings.adapter.msgs_per_s)
                ratios["independent"].append(rate / ceilings.independent.msgs_per_s)
                failed |= bool(result.lost or result.duplicated)
            if args.repeat > 1:
                print_median_ratios(db, ratios)
    return 1 if failed else 0


def print_median_ratios(db: str, ratios: dict[str, list[float]]) -> None:
    for client, values in ratios.items():
        print(f"{db}: median ratio to the {client} ceiling over {len(values)} runs {statistics.median(values):.0%} "
              f"(min {min(values):.0%}, max {max(values):.0%})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

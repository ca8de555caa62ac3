"""The `ecrm` command line: init, profiles import, campaign validate|launch|status, serve,
worker, apikey create, demo. Each command is a short function over the stage packages; as the
process's edge, it is where the system clock is handed to them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm import heap, loop
from ecrm.campaigns.launch import RunRef, create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.report import RunReport, run_report
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, session_factory
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.errors import EcrmError, SpecError
from ecrm.schema import ensure_schema
from ecrm.settings import Settings, load_settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings(args.config)
        result: int = args.handler(settings, args)
        return result
    except SpecError as exc:
        err_console.print(f"[red]refused[/red]: {len(exc.problems)} problem(s)", highlight=False)
        for problem in exc.problems:
            err_console.print(f"  {problem}", highlight=False, markup=False)
        return 1
    except EcrmError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted: messages not yet handed over stay queued; launch the same run again to "
                          "resume", highlight=False, markup=False)
        return 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ecrm", description="eCRM messaging engine")
    top.add_argument("--config", type=Path, default=None, help="settings file (default config/ecrm.yaml)")
    top.add_argument("-v", "--verbose", action="store_true")
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    _add(sub, "init", "create or upgrade the database schema", cmd_init)
    profiles = sub.add_parser("profiles", help="import profiles").add_subparsers(required=True, metavar="ACTION")
    _add(profiles, "import", "import profiles from a CSV file", cmd_import).add_argument("csv", type=Path)
    campaign = sub.add_parser("campaign", help="validate, launch, follow campaigns").add_subparsers(
        required=True, metavar="ACTION")
    _add(campaign, "validate", "check campaign files; nothing is sent", cmd_validate).add_argument(
        "files", type=Path, nargs="+")
    launch = _add(campaign, "launch", "validate and launch a campaign run", cmd_launch)
    launch.add_argument("file", type=Path)
    launch.add_argument("--run", help="run key (default: 'now', or the scheduled time); same key = resume")
    status = _add(campaign, "status", "deliveries of a campaign run by locale and status", cmd_status)
    status.add_argument("name")
    status.add_argument("--run", help="run key (default: the latest run)")
    serve = _add(sub, "serve", "start the HTTP API", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port (SO_REUSEPORT), e.g. one per core")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes
    _add(sub, "worker", "run the arq worker (needs redis_url)", cmd_worker).add_argument("--burst", action="store_true")
    apikey = sub.add_parser("apikey", help="manage API keys").add_subparsers(required=True, metavar="ACTION")
    _add(apikey, "create", "create an API key (shown once)", cmd_apikey).add_argument("name")
    demo = _add(sub, "demo", "seed profiles, send a campaign to a local SMTP server, report", cmd_demo)
    demo.add_argument("--profiles", type=int, default=1000)
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    return top


def _add(sub: Any, name: str, help_text: str, handler: Callable[[Settings, argparse.Namespace], int]) -> Any:
    command = sub.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(handler=handler)
    return command


def run(coro: Awaitable[int]) -> int:
    async def wrapped() -> int:
        return await coro

    return loop.run(wrapped(), sigterm_as_sigint=True)


def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        console.print(f"database ready: {settings.database_url}", highlight=False)
        return 0

    return run(go())


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            spec = load_campaign(path, settings)
        except SpecError as exc:
            failed += 1
            err_console.print(f"[red]✗[/red] {path}: {len(exc.problems)} problem(s)", highlight=False)
            for problem in exc.problems:
                err_console.print(f"  {problem}", highlight=False, markup=False)
            continue
        console.print(f"[green]✓[/green] {path}: campaign '{spec.name}' is valid", highlight=False)
    return 1 if failed else 0


def cmd_launch(settings: Settings, args: argparse.Namespace) -> int:
    spec = load_campaign(args.file, settings)
    return run(launch(settings, spec, str(args.file), args.run))


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database that carries this version's schema, disposed afterwards."""
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
        yield engine
    finally:
        await engine.dispose()


async def launch(settings: Settings, spec: Any, source: str, run_key: str | None) -> int:
    from ecrm.local import launch_in_process

    async with database(settings) as engine:
        if settings.redis_url:
            return await _launch_on_redis(settings, engine, spec, source, run_key)
        console.print(f"sending '{spec.name}' in this process (no redis_url configured)", highlight=False)
        heap.settle()
        ref, queue = await launch_in_process(settings, spec, source, run_key, engine, SYSTEM_CLOCK)
        _say_if_resumed(ref)
        report = await run_report(session_factory(engine), spec.name, ref.run_key)
        print_report(report)
    given_up = any(reason == Reason.TEMPORARY_EXHAUSTED for _, reason, _ in report.counts.reasons)
    return 1 if queue.failed or given_up or report.total("queued") else 0


async def _launch_on_redis(settings: Settings, engine: AsyncEngine, spec: Any, source: str,
                           run_key: str | None) -> int:
    from arq import create_pool
    from arq.connections import RedisSettings

    from ecrm.queue import ArqQueue

    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    try:
        ref = await create_run(session_factory(engine), spec, source, run_key)
        await enqueue_plan(ArqQueue(redis), ref, spec)
    finally:
        await redis.aclose()
    _say_if_resumed(ref)
    console.print(f"run '{ref.run_key}' of '{ref.campaign}' queued on {settings.redis_url}; "
                  f"`ecrm worker` sends it; follow with `ecrm campaign status {ref.campaign}`", highlight=False)
    return 0


def _say_if_resumed(ref: RunRef) -> None:
    if not ref.created:
        console.print(f"run '{ref.run_key}' already existed: it was resumed as first launched (nobody gets it twice); "
                      "edits to the file apply to a new run, e.g. --run 2", highlight=False)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with database(settings) as engine:
            print_report(await run_report(session_factory(engine), args.name, args.run))
        return 0

    return run(go())


STATUS_COLUMNS = tuple(DeliveryStatus)


def print_report(report: RunReport) -> None:
    table = Table(title=f"{report.campaign} / run {report.run_key}: {report.status}")
    table.add_column("locale")
    for status in STATUS_COLUMNS:
        table.add_column(status, justify="right")
    for locale, counts in report.by_locale.items():
        table.add_row(locale, *(str(counts.get(s, 0)) for s in STATUS_COLUMNS))
    table.add_row("all", *(str(report.total(s)) for s in STATUS_COLUMNS), style="bold")
    console.print(table)
    for state, reason, count in report.counts.reasons:
        console.print(f"  {count} {state}: {reason}", highlight=False, markup=False)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.profiles.csv_import import import_csv

    async def go(total: int | None) -> int:
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn())
        async with database(settings) as engine:
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("import", total=total)
                report = await import_csv(session_factory(engine), args.csv, SYSTEM_CLOCK,
                                          progress=lambda n: progress.advance(task, n))
        for error in report.errors[:50]:
            err_console.print(f"  {error}", highlight=False, markup=False)
        console.print(f"imported {report.imported}, skipped {report.skipped}", highlight=False)
        return 1 if report.errors else 0

    return run(go(_count_rows(args.csv)))


def _count_rows(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return max(0, sum(1 for _ in handle) - 1)
    except OSError:
        return None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.api.serve import serve, supervise, worker_command

    if args.workers < 1 or (args.workers > 1 and args.port == 0):
        raise EcrmError("--workers takes a number from 1 up, and more than 1 needs a fixed --port")
    if args.workers == 1 or args.worker:
        serve(settings, args.host, args.port, reuse_port=args.worker, quiet=args.worker)
        return 0
    command = worker_command(args.config, args.verbose, args.host, args.port)
    return supervise(command, args.workers, f"{args.host}:{args.port}")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.worker import make_worker

    if not settings.redis_url:
        raise EcrmError("`ecrm worker` needs redis_url (ECRM_REDIS_URL=redis://127.0.0.1:6379); without Redis, "
                        "`ecrm campaign launch` sends in its own process")
    loop.use_fast_loop()
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = make_worker(settings, burst=args.burst)
    heap.settle()
    worker.run()
    return 0


def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.api.apikeys import create_api_key

    async def go() -> int:
        async with database(settings) as engine, session_factory(engine).begin() as session:
            key = await create_api_key(session, args.name, SYSTEM_CLOCK.now())
        console.print(f"API key '{args.name}' (shown once, store it now):", highlight=False)
        sys.stdout.write(key + "\n")
        return 0

    return run(go())


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.demo import run_demo

    return run_demo(settings, args.profiles, args.out, SYSTEM_CLOCK)

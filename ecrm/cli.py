"""The `ecrm` command line: init, profiles import, campaign validate|launch|status|resume|resend,
segment validate|count|preview|explain, serve, worker, apikey create|list|revoke, shop connect|retry, demo.
Each command is a short function over the stage packages; as the process's edge, it is where the system clock
is handed to them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm import heap, loop, preflight, priority
from ecrm.api.scopes import DEFAULT_SCOPES, Scope, describe
from ecrm.campaigns.launch import RunRef, create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.report import RunReport, run_report
from ecrm.cli_failures import explain
from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, session_factory
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.dkim.keys import keygen
from ecrm.errors import EcrmError, SpecError
from ecrm.queue import InProcessQueue
from ecrm.schema import ensure_schema
from ecrm.settings import Settings, environment, load_settings
from ecrm.shops.connect import connect_steps
from ecrm.shops.jobs import map_pending
from ecrm.shops.registry import CONNECTORS
from ecrm.types import ChannelKind

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    settings: Settings | None = None
    environ: dict[str, str] = {}
    try:
        environ = environment()  # with ./.env, where `ecrm init DIR` put the secret key
        settings = load_settings(args.config, environ=environ)
        result: int = args.handler(settings, args)
        return result
    except KeyboardInterrupt:
        err_console.print("interrupted: messages not yet handed over stay queued; `ecrm campaign status NAME` "
                          "says how to resume", highlight=False, markup=False)
        return 130
    except Exception as exc:
        lines = None if args.debug or environ.get("ECRM_DEBUG", "") not in ("", "0") else explain(exc, settings)
        if lines is None:
            raise
        for line in lines:
            err_console.print(line, highlight=False, markup=False)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ecrm", description="eCRM messaging engine")
    top.add_argument("--config", type=Path, default=None, help="settings file (default config/ecrm.yaml)")
    top.add_argument("-v", "--verbose", action="store_true")
    top.add_argument("--debug", action="store_true", help="show the traceback of an error (also ECRM_DEBUG=1)")
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    _add(sub, "init", "create or upgrade the database schema; with DIR, a new project there", cmd_init).add_argument(
        "dir", type=Path, nargs="?", help="a new project: settings, campaigns, templates, .env, database")
    profiles = sub.add_parser("profiles", help="import profiles").add_subparsers(required=True, metavar="ACTION")
    profiles_import = _add(profiles, "import", "import profiles from a CSV file", cmd_import)
    profiles_import.add_argument("csv", type=Path)
    profiles_import.add_argument("--errors", type=Path, metavar="FILE",
                                 help="write every rejected row to FILE (CSV: line, external_id, field, reason)")
    campaign = sub.add_parser("campaign", help="validate, launch, follow campaigns").add_subparsers(
        required=True, metavar="ACTION")
    _add(campaign, "validate", "check campaign files; nothing is sent", cmd_validate).add_argument(
        "files", type=Path, nargs="+")
    launch = _add(campaign, "launch", "validate and launch a campaign run", cmd_launch)
    launch.add_argument("file", type=Path)
    launch.add_argument("--run", help="run key (default: 'now', or the scheduled time); same key = resume")
    _dev_flag(launch)
    status = _add(campaign, "status", "deliveries of a campaign run by locale and status", cmd_status)
    status.add_argument("name")
    status.add_argument("--run", help="run key (default: the latest run)")
    resume = _add(campaign, "resume", "send what a stopped run still has queued, from its stored spec", cmd_resume)
    resume.add_argument("name")
    resume.add_argument("--run", help="run key (default: the latest run)")
    _dev_flag(resume)
    resend = _add(campaign, "resend", "send a run's deliveries in doubt again (some may get two copies)", cmd_resend)
    resend.add_argument("name")
    resend.add_argument("--run", required=True, help="run key")
    resend.add_argument("--unknown", action="store_true", required=True,
                        help="the deliveries in doubt (`unknown`: may have been sent)")
    _dev_flag(resend)
    _segment_commands(sub)
    serve = _add(sub, "serve", "start the HTTP API", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port (SO_REUSEPORT), e.g. one per core")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes
    serve.add_argument("--mapped-apart", action="store_true", help=argparse.SUPPRESS)  # ... and --mapper maps
    serve.add_argument("--mapper", action="store_true", help=argparse.SUPPRESS)  # --workers' webhook mapper
    _dev_flag(serve)
    worker = _add(sub, "worker", "run the arq worker (needs redis_url)", cmd_worker)
    worker.add_argument("--burst", action="store_true")
    worker.add_argument("--transactional", action="store_true",
                        help="work the transactional messages' queue (POST /v1/messages) instead of the campaigns'")
    _dev_flag(worker)
    apikey = sub.add_parser("apikey", help="manage API keys").add_subparsers(required=True, metavar="ACTION")
    create_key = _add(apikey, "create", "create an API key (shown once)", cmd_apikey)
    create_key.add_argument("name")
    create_key.add_argument("--scope", action="append", choices=[s.value for s in Scope], dest="scopes",
                            help="what the key may do (repeat for several; default: ingest)")
    _add(apikey, "list", "list API keys, revoked ones too", cmd_apikey_list).add_argument(
        "--json", action="store_true", help="print a JSON array of {name, prefix, scopes, created_at, revoked_at}")
    _add(apikey, "revoke", "refuse an API key from now on (401); it stays listed", cmd_apikey_revoke).add_argument(
        "name", help="the key's name (or the whole key)")
    dkim = sub.add_parser("dkim", help="DKIM signing keys").add_subparsers(required=True, metavar="ACTION")
    keygen = _add(dkim, "keygen", "make a DKIM key and print its DNS record", cmd_dkim_keygen)
    keygen.add_argument("domain")
    keygen.add_argument("selector")
    keygen.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa")
    keygen.add_argument("--out", type=Path, help="private key file (default SELECTOR.DOMAIN.dkim.key)")
    sms = sub.add_parser("sms", help="SMS tools").add_subparsers(required=True, metavar="ACTION")
    sms_count = _add(sms, "count", "the encoding, units and parts of an SMS text, as Twilio counts them",
                     cmd_sms_count)
    sms_count.add_argument("text", help="the text, or - to read it from standard input")
    sms_count.add_argument("--json", action="store_true", help='print {"encoding", "units", "parts"} as JSON')
    push = sub.add_parser("push", help="web push").add_subparsers(required=True, metavar="ACTION")
    _add(push, "keys", "make a VAPID key pair for web push and print where each half goes", cmd_push_keys)
    shop = sub.add_parser("shop", help="shop webhooks (Shopify, WooCommerce)").add_subparsers(
        required=True, metavar="ACTION")
    _add(shop, "connect", "print the webhook URL, topics and secret set-up for a shop", cmd_shop_connect
         ).add_argument("shop", choices=list(CONNECTORS))
    _add(shop, "retry", "map stored webhooks again: failed ones, and those no job mapped", cmd_shop_retry)
    demo = _add(sub, "demo", "seed profiles, send a campaign to a local SMTP server, report", cmd_demo)
    demo.add_argument("--profiles", type=int, default=1000)
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    return top


def _segment_commands(sub: Any) -> None:
    segment = sub.add_parser("segment", help="named segments (segments/NAME.yaml)").add_subparsers(
        required=True, metavar="ACTION")
    _add(segment, "validate", "check segment files (FILE or NAME); no query runs", cmd_segment_validate).add_argument(
        "refs", nargs="+", metavar="FILE|NAME")
    commands = (("count", "how many profiles the segment holds now", cmd_segment_count),
                ("preview", "a table of the first matching profiles", cmd_segment_preview),
                ("explain", "the segment's SQL and, on PostgreSQL, its plan", cmd_segment_explain))
    for name, help_text, handler in commands:
        command = _add(segment, name, help_text, handler)
        command.add_argument("segment", metavar="FILE|NAME", help="a segment file, or NAME for segments/NAME.yaml")
        command.add_argument("--channel", choices=[c.value for c in ChannelKind],
                             help="only the profiles a campaign on this channel would reach (address, consent)")
        command.add_argument("--json", action="store_true", help="print JSON")
        if name == "preview":
            command.add_argument("--limit", type=int, default=20, help="how many profiles (1-1000, default 20)")
        if name == "explain":
            command.add_argument("--analyze", action="store_true", help="run it: EXPLAIN (ANALYZE, BUFFERS)")


def _add(sub: Any, name: str, help_text: str, handler: Callable[[Settings, argparse.Namespace], int]) -> Any:
    command = sub.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(handler=handler)
    return command


def _dev_flag(command: Any) -> None:
    command.add_argument("--dev", action="store_true",
                         help="a test machine: allow the shipped secret_key and a public_url without HTTPS")


def run(coro: Awaitable[int]) -> int:
    async def wrapped() -> int:
        return await coro

    return loop.run(wrapped(), sigterm_as_sigint=True)


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    if args.dir is not None:
        from ecrm.scaffold import project_settings, scaffold

        scaffold(args.dir)
        console.print(f"project    {args.dir}/: config/ecrm.yaml, campaigns/, templates/ (en, fa, th), segments/, "
                      ".env (a new ECRM_SECRET_KEY)", highlight=False)
        settings = project_settings(args.dir)

    preflight.check_sqlite_folder(settings.database_url)

    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        console.print(f"database ready: {settings.database_url}", highlight=False)
        if args.dir is not None:
            console.print(f"next:\n  cd {shlex.quote(str(args.dir))}\n  ecrm profiles import customers.csv\n"
                          "  ecrm campaign validate campaigns/welcome.yaml\n"
                          "then set smtp and an https:// public_url in config/ecrm.yaml, and "
                          "`ecrm campaign launch campaigns/welcome.yaml`", highlight=False, markup=False)
        return 0

    return run(go())


def cmd_dkim_keygen(_settings: Settings, args: argparse.Namespace) -> int:
    for line in keygen(args.domain, args.selector, args.algorithm, args.out):
        console.print(line, highlight=False, markup=False)
    return 0


def cmd_sms_count(_settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ecrm.channels.sms.parts import count, stdin_text

    parts = count(stdin_text(sys.stdin.buffer.read()) if args.text == "-" else args.text)
    print(json.dumps(dataclasses.asdict(parts)) if args.json else parts.describe())
    return 0


def cmd_push_keys(_settings: Settings, _args: argparse.Namespace) -> int:
    from ecrm.push.vapid import new_key_pair, setup_lines

    for line in setup_lines(new_key_pair()):
        console.print(line, highlight=False, markup=False)
    return 0


def print_refused(name: object, exc: SpecError) -> None:
    """A refused file's problems, a line each (as written: no markup in them is rendered)."""
    err_console.print(f"[red]✗[/red] {name}: {len(exc.problems)} problem(s)", highlight=False)
    for problem in exc.problems:
        err_console.print(f"  {problem}", highlight=False, markup=False)


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            spec = load_campaign(path, settings)
        except SpecError as exc:
            failed += 1
            print_refused(path, exc)
            continue
        console.print(f"[green]✓[/green] {path}: campaign '{spec.name}' is valid", highlight=False)
    return 1 if failed else 0


def cmd_segment_validate(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.segments.library import find_segment

    failed = 0
    for ref in args.refs:
        try:
            segment = find_segment(ref, settings.segments_dir, settings.money)
        except SpecError as exc:
            failed += 1
            print_refused(ref, exc)
            continue
        console.print(f"[green]✓[/green] {segment.path}: segment '{segment.name}' is valid", highlight=False)
    return 1 if failed else 0


def cmd_launch(settings: Settings, args: argparse.Namespace) -> int:
    preflight.check(settings, args.dev)
    spec = load_campaign(args.file, settings)
    return run(launch(settings, spec, str(args.file), args.run))


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database that carries this version's schema, disposed afterwards."""
    preflight.check_sqlite_folder(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
        yield engine
    finally:
        await engine.dispose()


async def launch(settings: Settings, spec: Any, source: str, run_key: str | None) -> int:
    from ecrm.channels.email.probe import check_smtp
    from ecrm.channels.sms.twilio import TwilioSms
    from ecrm.local import launch_in_process
    from ecrm.types import ChannelKind

    async with database(settings) as engine:
        if settings.redis_url:
            ref = await create_run(session_factory(engine), spec, source, run_key)
            return await _queue_on_redis(settings, ref, spec)
        if ChannelKind.EMAIL in spec.kinds:
            await check_smtp(settings.smtp)  # fail now, not after an hour of retries
        if ChannelKind.SMS in spec.kinds:
            TwilioSms.from_settings(settings)  # ConfigError now: no auth token or no sender
        console.print(f"sending '{spec.name}' in this process (no redis_url configured)", highlight=False)
        heap.settle()
        ref, queue = await launch_in_process(settings, spec, source, run_key, engine, SYSTEM_CLOCK)
        _say_if_resumed(ref)
        return await _report_in_process(engine, ref, queue)


async def _report_in_process(engine: AsyncEngine, ref: RunRef, queue: InProcessQueue) -> int:
    report = await run_report(session_factory(engine), ref.campaign, ref.run_key)
    print_report(report)
    given_up = any(reason == Reason.TEMPORARY_EXHAUSTED for _, reason, _ in report.counts.reasons)
    return 1 if queue.failed or given_up or report.total("queued") else 0


async def _queue_on_redis(settings: Settings, ref: RunRef, spec: Any) -> int:
    from arq import create_pool
    from arq.connections import RedisSettings

    from ecrm.queue import ArqQueue

    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    try:
        await enqueue_plan(ArqQueue(redis), ref, spec)
    finally:
        await redis.aclose()
    _say_if_resumed(ref)
    console.print(f"run '{ref.run_key}' of '{ref.campaign}' queued on {settings.redis_url}; "
                  f"`ecrm worker` sends it; follow with `ecrm campaign status {ref.campaign}`", highlight=False)
    return 0


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    preflight.check(settings, args.dev)
    return run(resume(settings, args.name, args.run, in_doubt=False))


def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    preflight.check(settings, args.dev)
    return run(resume(settings, args.name, args.run, in_doubt=args.unknown))


async def resume(settings: Settings, name: str, run_key: str | None, *, in_doubt: bool) -> int:
    """Send a stopped run again from its stored spec; with `in_doubt`, its `unknown` ones too."""
    from ecrm.campaigns.resume import prepare_resume, stored_spec
    from ecrm.channels.email.probe import check_smtp
    from ecrm.local import resume_in_process
    from ecrm.types import ChannelKind

    async with database(settings) as engine:
        if not settings.redis_url:  # before anything is requeued: fail now, not after an hour of retries
            spec = await stored_spec(session_factory(engine), name, run_key)
            if ChannelKind.EMAIL in spec.kinds:
                await check_smtp(settings.smtp)
        again = await prepare_resume(session_factory(engine), name, run_key, SYSTEM_CLOCK, in_doubt=in_doubt)
        if in_doubt:
            err_console.print(f"warning: {again.requeued} deliveries in doubt are sent again; those that did reach "
                              "their recipient before will arrive twice", highlight=False, markup=False)
        if settings.redis_url:
            return await _queue_on_redis(settings, again.run, again.spec)
        console.print(f"sending run '{again.run.run_key}' of '{name}' in this process", highlight=False)
        queue = await resume_in_process(settings, again.run, again.spec, engine, SYSTEM_CLOCK)
        return await _report_in_process(engine, again.run, queue)


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
    for line in next_steps(report):
        console.print(line, highlight=False, markup=False)


def next_steps(report: RunReport) -> list[str]:
    """What an operator can do about a run that stopped or left deliveries in doubt."""
    run = f"{report.campaign} --run {report.run_key}"
    lines = []
    if report.stopped:
        lines.append(f"stopped: {report.stopped}; {report.total('queued')} deliveries are still queued. "
                     f"Resume with `ecrm campaign resume {run}`.")
    if report.in_flight:
        lines.append(f"{report.in_flight} of them were in a chunk being sent when it stopped: resuming settles them "
                     "from the sender's journal (answered ones recorded sent, the ones written and not yet "
                     "answered in doubt, `unknown`, the rest sent).")
    if report.status != "running" and report.total("unknown"):
        lines.append(f"{report.total('unknown')} deliveries are in doubt (may have been sent). "
                     f"`ecrm campaign resend {run} --unknown` sends them again; some recipients may get a second "
                     "copy.")
    return lines


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.profiles.csv_import import count_rows, import_csv
    from ecrm.profiles.rejections import summary

    async def go() -> int:
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn())
        async with database(settings) as engine:
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("import", total=None)
                # The bar's total is counted while the import starts (a pass over the whole file:
                # ~3 s at a million rows), not before it.
                counting = asyncio.create_task(asyncio.to_thread(count_rows, args.csv))
                counting.add_done_callback(
                    lambda done: None if done.cancelled() or done.exception() else progress.update(
                        task, total=done.result()))
                try:
                    report = await import_csv(session_factory(engine), args.csv, SYSTEM_CLOCK,
                                              progress=lambda rows: progress.update(task, completed=rows),
                                              errors_file=args.errors, max_traits_bytes=settings.api.max_traits_bytes)
                finally:
                    await asyncio.gather(counting, return_exceptions=True)
        for rejection in report.shown:
            err_console.print(f"  {rejection}", highlight=False, markup=False)
        if line := summary(report.problems, len(report.shown), args.errors):
            err_console.print(line, highlight=False, markup=False)
        console.print(f"imported {report.imported} ({report.created} new), rejected {report.skipped} of "
                      f"{report.rows} rows", highlight=False)
        return 1 if report.problems else 0

    return run(go())


def _segment_command(settings: Settings, args: argparse.Namespace,
                     body: Callable[[AsyncEngine, Any], Awaitable[int]]) -> int:
    from ecrm.segments.commands import SegmentQuestion

    question = SegmentQuestion.load(settings, args.segment, args.channel, SYSTEM_CLOCK.now())

    async def go() -> int:
        async with database(settings) as engine:
            return await body(engine, question)

    return run(go())


def cmd_segment_count(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.segments.commands import segment_count

    return _segment_command(settings, args, lambda engine, q: segment_count(engine, q, args.json, console))


def cmd_segment_preview(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.segments.commands import segment_preview

    if not 1 <= args.limit <= 1000:
        raise EcrmError("--limit takes a number from 1 to 1000")
    return _segment_command(settings, args,
                            lambda engine, q: segment_preview(engine, q, args.limit, args.json, console))


def cmd_segment_explain(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.segments.commands import segment_explain

    return _segment_command(settings, args,
                            lambda engine, q: segment_explain(engine, q, args.analyze, args.json, console))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.api.serve import mapper_command, maps_apart, run_mapper, serve, supervise, worker_command

    if args.mapper:  # the parent checked
        return run_mapper(settings)
    if not args.worker:  # --workers' processes: their parent checked
        preflight.check(settings, args.dev, listen_host=args.host)
    if args.workers < 1 or (args.workers > 1 and args.port == 0):
        raise EcrmError("--workers takes a number from 1 up, and more than 1 needs a fixed --port")
    if not args.worker:  # --workers' processes inherit it
        priority.claim_cores(settings.api.nice)
    if args.workers == 1 or args.worker:
        serve(settings, args.host, args.port, reuse_port=args.worker, quiet=args.worker, shop_mapper=args.mapped_apart)
        return 0
    apart = maps_apart(settings)
    command = worker_command(args.config, args.verbose, args.host, args.port, mapped_apart=apart)
    mapper = mapper_command(args.config, args.verbose) if apart else None
    return supervise(command, args.workers, f"{args.host}:{args.port}", mapper)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.worker import make_transactional_worker, make_worker, yield_cores

    if not settings.redis_url:
        raise EcrmError("`ecrm worker` needs redis_url (ECRM_REDIS_URL=redis://127.0.0.1:6379); without Redis, "
                        "`ecrm campaign launch` sends in its own process")
    preflight.check(settings, args.dev)
    loop.use_fast_loop()
    asyncio.set_event_loop(asyncio.new_event_loop())
    if args.transactional:
        priority.claim_cores(settings.send.transactional_nice)
    else:
        yield_cores(settings)
    worker = (make_transactional_worker if args.transactional else make_worker)(settings, burst=args.burst)
    heap.settle()
    worker.run()
    return 0


def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.api.apikeys import check_key_name, create_api_key

    check_key_name(args.name)
    scopes = frozenset(Scope(s) for s in args.scopes) if args.scopes else DEFAULT_SCOPES

    async def go() -> int:
        async with database(settings) as engine, session_factory(engine).begin() as session:
            key = await create_api_key(session, args.name, SYSTEM_CLOCK.now(), scopes)
        console.print(f"API key '{args.name}', scopes {describe(scopes)} (shown once, store it now):",
                      highlight=False, markup=False)
        sys.stdout.write(key + "\n")
        return 0

    return run(go())


def cmd_apikey_list(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from ecrm.api.apikey_table import key_table
    from ecrm.api.apikeys import key_summary, list_api_keys

    async def go() -> int:
        async with database(settings) as engine, session_factory(engine)() as session:
            keys = await list_api_keys(session)
        if args.json:
            print(json.dumps([key_summary(key) for key in keys], ensure_ascii=False))
        else:
            console.print(key_table(keys))
        return 0

    return run(go())


def cmd_apikey_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.api.apikeys import revoke_api_key

    async def go() -> int:
        async with database(settings) as engine, session_factory(engine).begin() as session:
            key = await revoke_api_key(session, args.name, SYSTEM_CLOCK.now())
            if key is None:
                raise EcrmError(f"no active API key is named {args.name!r}; `ecrm apikey list` shows them")
        console.print(f"API key '{key.name}' (ecrm_{key.prefix}_…) revoked: requests with it now get 401",
                      highlight=False, markup=False)
        return 0

    return run(go())


def cmd_shop_connect(settings: Settings, args: argparse.Namespace) -> int:
    for line in connect_steps(settings, args.shop):
        console.print(line, markup=False, highlight=False)
    return 0


def cmd_shop_retry(settings: Settings, _args: argparse.Namespace) -> int:
    async def go() -> int:
        async with database(settings) as engine:
            now = SYSTEM_CLOCK.now()  # a webhook a minute old with no mapping lost its job
            counts = await map_pending(session_factory(engine), settings, now - timedelta(minutes=1), now)
        console.print(f"mapped {counts['mapped']}, failed {counts['failed']} (see received_webhooks.error)")
        return 1 if counts["failed"] else 0

    return run(go())


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from ecrm.demo import run_demo

    return run_demo(settings, args.profiles, args.out, SYSTEM_CLOCK)

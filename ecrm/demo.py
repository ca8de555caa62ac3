"""`ecrm demo`: the whole flow on a bare machine, no Redis and no PostgreSQL needed.

It runs from any folder and writes only under its output folder (`demo-out/`): a SQLite
database and the mailbox. It seeds about 1,000 profiles in English, Persian and Thai, starts
the local SMTP sink on loopback (capturing each message as a .eml file), launches the
`campaigns/welcome.yaml` that ships with ecrm (`ecrm/starter/`) in this process, reads the
mailbox back as delivery receipts and prints what was sent and delivered per locale. The
profiles and the run take the time from the clock `run_demo` is given.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ecrm import heap, loop, starter
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.report import RunReport, run_report
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.db import create_engine, migrate, session_factory
from ecrm.feedback.mailbox import apply_mailbox
from ecrm.local import launch_in_process
from ecrm.peers.smtp_sink import SmtpSink
from ecrm.profiles.ingest import ProfileIn, upsert_profiles
from ecrm.render.message_id import MessageIds
from ecrm.settings import Settings

CAMPAIGN = starter.WELCOME
PEOPLE = {
    "en": (["Emma", "Liam", "Olivia", "Noah", "Ava", "James"], ["Smith", "Jones", "Brown", "Taylor"], "Europe/London"),
    "fa": (["سارا", "علی", "مریم", "رضا", "نگار", "حسین"], ["احمدی", "رضایی", "محمدی", "کریمی"], "Asia/Tehran"),
    "th": (["สมชาย", "สมหญิง", "อนันต์", "มาลี", "วิชัย", "ปราณี"], ["ใจดี", "สุขสันต์", "ทองดี", "ศรีสุข"], "Asia/Bangkok"),
}
console = Console()


def demo_profiles(count: int, seed: int = 7) -> list[ProfileIn]:
    """`count` people over three locales; about 92% agreed to email, some withdrew, some never said."""
    rng = random.Random(seed)
    locales = list(PEOPLE)
    profiles = []
    for i in range(count):
        locale = locales[i % len(locales)]
        first, last, zone = PEOPLE[locale]
        roll = rng.random()
        consent = {"email": {"state": "granted" if roll < 0.92 else "withdrawn", "source": "demo-signup"}}
        profiles.append(ProfileIn.model_validate({
            "external_id": f"demo-{i:05d}", "email": f"customer{i:05d}@demo.example",
            "first_name": rng.choice(first), "last_name": rng.choice(last), "locale": locale, "time_zone": zone,
            "traits": {"points": rng.randrange(50, 5000, 50)},
            "consent": consent if roll < 0.97 else {},
        }))
    return profiles


def run_demo(settings: Settings, count: int, out: Path, clock: Clock = SYSTEM_CLOCK) -> int:
    _clear(out)
    return loop.run(_demo(settings, count, out, clock))


def _clear(out: Path) -> None:
    """Remove what an earlier demo left in `out` (its database and captured mail), nothing else."""
    for path in [*out.glob("ecrm.db*"), *(out / "mail").glob("*.eml")]:
        path.unlink()


async def _demo(settings: Settings, count: int, out: Path, clock: Clock) -> int:
    started = time.perf_counter()
    mail = out / "mail"
    sink = SmtpSink(capture=mail)
    port = await sink.start()
    settings = settings.model_copy(update={
        "database_url": f"sqlite+aiosqlite:///{out / 'ecrm.db'}", "redis_url": None,
        "templates_dir": starter.TEMPLATES,
        "smtp": settings.smtp.model_copy(update={"host": "127.0.0.1", "port": port, "starttls": False,
                                                  "tls": False, "username": None, "password": None}),
    })
    try:
        report = await _run(settings, count, mail, port, clock)
    finally:
        await sink.close()
    _print(report, sink.stats()["messages"], mail, out, time.perf_counter() - started)
    return 0 if report.total("delivered") == sink.stats()["messages"] else 1


async def _run(settings: Settings, count: int, mail: Path, port: int, clock: Clock) -> RunReport:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        await migrate(engine)
        console.print(f"database   {settings.database_url.split('///', 1)[1]} (SQLite, created)", highlight=False)
        async with sessions.begin() as session:
            await upsert_profiles(session, demo_profiles(count), clock.now())
        console.print(f"profiles   {count} seeded in English, Persian and Thai", highlight=False)
        console.print(f"smtp       ecrm sink on 127.0.0.1:{port}, capturing to {mail}/", highlight=False)
        spec = load_campaign(CAMPAIGN, settings)
        console.print(f"campaign   {CAMPAIGN.relative_to(starter.STARTER)} (shipped with ecrm) is valid; sending...",
                      highlight=False)
        heap.settle()
        await launch_in_process(settings, spec, str(CAMPAIGN), engine=engine, clock=clock)
        await apply_mailbox(sessions, MessageIds(settings.secret_key, settings.email.message_id_domain), mail,
                            clock)
        return await run_report(sessions, spec.name)
    finally:
        await engine.dispose()


def _print(report: RunReport, received: int, mail: Path, out: Path, seconds: float) -> None:
    table = Table(title=f"campaign '{report.campaign}', run '{report.run_key}': {report.status}")
    for column in ("locale", "audience", "sent", "delivered", "failed", "queued"):
        table.add_column(column, justify="left" if column == "locale" else "right")
    for locale, counts in report.by_locale.items():
        delivered = counts.get("delivered", 0)
        table.add_row(locale, str(sum(counts.values())), str(counts.get("sent", 0) + delivered), str(delivered),
                      str(counts.get("failed", 0)), str(counts.get("queued", 0)))
    console.print(table)
    samples = {locale: _sample_file(mail, locale) for locale in report.by_locale}
    console.print(f"mailbox    {received} messages captured in {mail}/", highlight=False)
    for locale, path in samples.items():
        if path is not None:
            console.print(f"           {locale}: e.g. {path}", highlight=False)
    console.print(f"database   {out / 'ecrm.db'}; `ecrm --help` for more. Took {seconds:.1f} s.", highlight=False)


def _sample_file(mail: Path, locale: str) -> Path | None:
    marker = f"Content-Language: {locale}".encode()
    for path in sorted(mail.glob("*.eml"), key=lambda p: int(p.stem))[:50]:
        if marker in path.read_bytes():
            return path
    return None

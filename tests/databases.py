"""Test databases: migrated once per test session, then copied for each test.

Migrating a new database takes about a second on PostgreSQL (0.3 s on SQLite); copying a
migrated template (`CREATE DATABASE ... TEMPLATE`) takes 0.1-0.5 s, a migrated SQLite file a
millisecond. `Migrated` builds one of each on first use and copies it per test;
`fresh_database` migrates from scratch, for the tests of the migrations themselves.

Every session names its PostgreSQL databases with a token of its own (`ecrm_tpl_<token>`,
`ecrm_test_<token>_<n>`), so sessions from several worktrees can share one server, and holds an
advisory lock on the token while it lives: a session finding another's databases whose lock
nobody holds (a killed run) drops them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg

from ecrm.db import create_engine, migrate

PG_ADMIN = os.environ.get("TESTS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCKS = 0x6563726D  # "ecrm": the advisory lock namespace of test sessions
TEMPLATE = "ecrm_tpl_"
TEST = "ecrm_test_"
Kind = Literal["sqlite", "postgresql"]
T = TypeVar("T")


def sqlalchemy_url(admin_url: str, database: str) -> str:
    """The asyncpg SQLAlchemy URL of `database` on the server of `admin_url`."""
    return admin_url.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{database}"


async def migrate_url(url: str) -> None:
    """Bring the database at `url` to the newest schema, closing every connection after."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def fresh_database(kind: Kind, directory: Path, admin_url: str = PG_ADMIN) -> AsyncIterator[str]:
    """A database migrated from scratch: a SQLite file in `directory`, or a new PostgreSQL one."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'test.db'}"
        await migrate_url(url)
        yield url
        return
    name = f"{TEST}{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = sqlalchemy_url(admin_url, name)
            await migrate_url(url)
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class Migrated:
    """The session's migrated databases, built on first use, and copies of them per test.

    The PostgreSQL template and the advisory lock that marks the session alive belong to one
    connection on an event loop of the session's own (a thread), since each test runs its own
    loop. That connection also copies the template for the next test and drops the last test's
    database while a test runs, so a test seldom waits for either (each takes 0.1-1 s)."""

    def __init__(self, directory: Path, admin_url: str = PG_ADMIN) -> None:
        self.directory = directory
        self.admin_url = admin_url
        self.token = uuid.uuid4().hex[:12]
        self.template = f"{TEMPLATE}{self.token}"
        self._numbers = itertools.count()
        self._sqlite: Path | None = None
        self._admin: asyncpg.Connection | None = None
        self._turn = asyncio.Lock()  # the admin connection does one thing at a time
        self._next: Future[str] | None = None
        self._drops: list[Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Migrated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sqlite(self, target: Path) -> str:
        """A copy of the session's migrated SQLite file at `target`; its URL."""
        if self._sqlite is None:
            migrated = self.directory / "migrated.db"
            self._submit(migrate_url(f"sqlite+aiosqlite:///{migrated}")).result()
            assert not migrated.with_name(migrated.name + "-wal").exists(), "the WAL was not checkpointed"
            self._sqlite = migrated
        shutil.copyfile(self._sqlite, target)
        return f"sqlite+aiosqlite:///{target}"

    @asynccontextmanager
    async def postgresql(self) -> AsyncIterator[str]:
        """A new PostgreSQL database copied from the session's template, dropped after."""
        ready, self._next = self._next or self._submit(self._copy()), None
        name = await asyncio.wrap_future(ready)
        self._next = self._submit(self._copy())
        try:
            yield sqlalchemy_url(self.admin_url, name)
        finally:
            self._drops.append(self._submit(self._drop(name)))

    def close(self) -> None:
        """Drop the tests' databases and the template; let go of the lock."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._submit(self._close()).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _copy(self) -> str:
        async with self._turn:
            if self._admin is None:
                self._admin = await self._create_template()
            name = f"{TEST}{self.token}_{next(self._numbers)}"
            # the default WAL_LOG strategy: FILE_COPY forces two checkpoints, slower on a busy server
            await self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            return name

    async def _drop(self, name: str) -> None:
        async with self._turn:
            assert self._admin is not None
            await self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _close(self) -> None:
        try:
            for drop in self._drops:
                await asyncio.wrap_future(drop)
        finally:
            if self._next is not None:
                spare = (await asyncio.gather(asyncio.wrap_future(self._next), return_exceptions=True))[0]
                if isinstance(spare, str):  # else the copy failed: nothing to drop
                    await self._drop(spare)
            if self._admin is not None:
                await self._drop(self.template)
                await self._admin.close()

    async def _create_template(self) -> asyncpg.Connection:
        admin = await asyncpg.connect(self.admin_url)
        await admin.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCKS, self.token)
        try:
            await _drop_dead_sessions(admin, self.token)
            await admin.execute(f'CREATE DATABASE "{self.template}"')
            await migrate_url(sqlalchemy_url(self.admin_url, self.template))
            # nobody may connect to it from now on: a copy fails while anyone is connected
            await admin.execute(f'ALTER DATABASE "{self.template}" WITH ALLOW_CONNECTIONS false')
        except BaseException:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            await admin.close()
            raise
        return admin

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coroutine` on the session's loop, started on first use."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="migrated-databases", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)


async def _drop_dead_sessions(admin: asyncpg.Connection, own: str) -> None:
    """Drop the databases of sessions whose lock nobody holds: runs killed before cleaning up."""
    names = [row["datname"] for row in await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1 OR datname LIKE $2",
        f"{TEMPLATE}%", f"{TEST}%\\_%")]
    tokens = {name.removeprefix(TEMPLATE) for name in names if name.startswith(TEMPLATE)}
    tokens |= {name.removeprefix(TEST).split("_")[0] for name in names if name.startswith(TEST)}
    for token in tokens - {own}:
        if not await admin.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCKS, token):
            continue  # its session is alive
        try:
            for name in names:
                if name == f"{TEMPLATE}{token}" or name.startswith(f"{TEST}{token}_"):
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCKS, token)

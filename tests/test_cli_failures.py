"""What the command line expects to go wrong is one line on stderr and exit code 1, never a
traceback with SQL or a key hash; --debug (or ECRM_DEBUG=1) shows the traceback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ecrm.api.models import ApiKey
from ecrm.cli import main
from ecrm.db import create_engine, session_factory
from tests.conftest import ROOT
from tests.databases import PG_ADMIN
from tests.factories import add_profiles
from tests.smtp import free_port


def ecrm(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "ECRM_CONFIG": "/nonexistent", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "ecrm", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=60)


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_init_against_an_unreachable_database_says_so_in_a_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://ecrm:hunter2@127.0.0.1:{free_port()}/ecrm"
    done = ecrm(tmp_path, "init", ECRM_DATABASE_URL=url)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith("error: cannot connect: ") and "Connection refused" in line
    assert "ecrm:***@127.0.0.1" in line and "hunter2" not in line



def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECRM_DATABASE_URL", f"postgresql+asyncpg://ecrm@127.0.0.1:{free_port()}/ecrm")
    with pytest.raises(ConnectionRefusedError):
        main(["--config", "/nonexistent", "--debug", "init"])
    monkeypatch.setenv("ECRM_DEBUG", "1")
    with pytest.raises(ConnectionRefusedError):
        main(["--config", "/nonexistent", "init"])


def test_a_database_error_is_its_first_line_without_the_sql(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + "/ecrm_no_such_database"
    monkeypatch.setenv("ECRM_DATABASE_URL", url)
    assert main(["--config", "/nonexistent", "init"]) == 1
    assert one_error_line(capsys.readouterr().err) == f'error: database {url}: database "ecrm_no_such_database" ' \
                                                      f'does not exist'


@pytest.mark.parametrize(("name", "says"), [
    ("x" * 150, "an API key's name has 1 to 100 characters, not 150"),
    ("shop\nADMIN key", "an API key's name holds letters, digits, spaces and _ . @ -"),
])
def test_an_api_key_name_is_checked_before_the_database(
    db_url: str, tmp_path: Path, name: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ecrm.yaml"
    config.write_text(f"database_url: {db_url}\n")
    assert main(["--config", str(config), "apikey", "create", name]) == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {says}")
    assert main(["--config", str(config), "apikey", "create", "x" * 100]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ecrm_")

    assert asyncio.run(count_keys(db_url)) == 1


async def count_keys(db_url: str) -> int | None:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(func.count()).select_from(ApiKey))
    finally:
        await engine.dispose()


def test_an_in_process_launch_whose_smtp_server_is_down_stops_at_once_and_plans_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nobody listens there
    config = tmp_path / "ecrm.yaml"
    config.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'cli.db'}\n"
                      f"templates_dir: {ROOT / 'templates'}\nsmtp:\n  port: {port}\n")
    assert main(["--config", str(config), "init"]) == 0
    asyncio.run(seed(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"))
    capsys.readouterr()

    started = time.monotonic()
    assert main(["--config", str(config), "campaign", "launch", str(ROOT / "campaigns" / "welcome.yaml")]) == 1
    assert time.monotonic() - started < 5
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot open an SMTP session with 127.0.0.1:{port}: ")
    assert "Connection refused" in line and "nothing was planned or sent" in line
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT count(*) FROM campaigns").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)


async def seed(db_url: str) -> None:
    engine = create_engine(db_url)
    await add_profiles(session_factory(engine), 3, ("en", "fa", "th"))
    await engine.dispose()

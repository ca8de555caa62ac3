"""The `ecrm` command line on a fresh SQLite database: init, validate, launch, status."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ecrm.cli import main
from ecrm.db import session_factory
from tests.conftest import ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer


@pytest.fixture
def config(tmp_path: Path, smtp: SmtpServer) -> Path:
    path = tmp_path / "ecrm.yaml"
    path.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'cli.db'}\n"
                    f"templates_dir: {ROOT / 'templates'}\n"
                    f"smtp:\n  port: {smtp.port}\n")
    assert main(["--config", str(path), "init"]) == 0
    return path


def seed(config: Path, count: int) -> None:
    from ecrm.db import create_engine
    from ecrm.settings import load_settings

    async def go() -> None:
        engine = create_engine(load_settings(config, environ={}).database_url)
        await add_profiles(session_factory(engine), count, ("en", "fa", "th"))
        await engine.dispose()

    asyncio.run(go())


def rows(config: Path, table: str) -> int:
    db = config.parent / "cli.db"
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_launch_sends_the_campaign_and_status_reports_it(config: Path, smtp: SmtpServer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    seed(config, 6)
    assert main(["--config", str(config), "campaign", "launch", str(ROOT / "campaigns" / "welcome.yaml")]) == 0
    assert len(smtp.handler.received) == 6
    assert main(["--config", str(config), "campaign", "launch", str(ROOT / "campaigns" / "welcome.yaml")]) == 0
    assert "run 'now' already existed: it was resumed" in capsys.readouterr().out
    assert len(smtp.handler.received) == 6
    assert main(["--config", str(config), "campaign", "status", "welcome"]) == 0
    out = capsys.readouterr().out
    assert "welcome / run now: done" in out
    fa_row = next(line for line in out.splitlines() if "│ fa " in line)
    assert [cell.strip() for cell in fa_row.split("│")][1:5] == ["fa", "0", "2", "0"]  # queued, sent, delivered


def test_an_invalid_campaign_is_refused_and_nothing_is_stored_or_sent(
    config: Path, smtp: SmtpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(config, 3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchannel: email\ntemplate: welcome\n"
                   "audience:\n  rules:\n    - field: nope\n      value: 1\n")
    assert main(["--config", str(config), "campaign", "launch", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:6 audience.rules[0].field: 'nope' is not a profile field" in err
    assert smtp.handler.received == []
    assert rows(config, "campaigns") == 0 and rows(config, "deliveries") == 0


def test_validate_reports_each_file(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchannel: email\n")
    good = ROOT / "campaigns" / "welcome.yaml"
    assert main(["--config", str(config), "campaign", "validate", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "campaign 'welcome' is valid" in captured.out
    assert f"{bad}:1 template: required field is missing" in captured.err


def test_commands_refuse_a_database_that_was_not_initialised(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fresh.yaml"
    path.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'fresh.db'}\n")
    assert main(["--config", str(path), "campaign", "status", "welcome"]) == 1
    assert "is not initialised: run `ecrm init` first" in capsys.readouterr().err


def test_a_bad_setting_names_the_key_and_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("smtp:\n  port: lots\n")
    assert main(["--config", str(path), "init"]) == 1
    assert f"smtp.port ({path}:2): Input should be a valid integer" in capsys.readouterr().err


def test_import_counts_rows_prints_the_first_problems_and_says_where_the_rest_are(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    people = tmp_path / "people.csv"
    people.write_text("external_id,email,note\n" + "".join(
        f'c-{i},{f"p{i}@example.com" if i % 10 else "not-an-address"},"two\nlines"\n' for i in range(7000)))
    assert main(["--config", str(config), "profiles", "import", str(people)]) == 1
    out, err = capsys.readouterr()
    assert "7000/7000 rows" in out
    assert "imported 6300 (6300 new), rejected 700 of 7000 rows" in out
    assert err.count(f"{people}:") == 50 and f"  {people}:2 email:" in err
    assert "50 of 700 problems printed, 650 not printed; add --errors FILE to write every one to a CSV file" in err

    errors = tmp_path / "errors.csv"
    assert main(["--config", str(config), "profiles", "import", str(people), "--errors", str(errors)]) == 1
    err = capsys.readouterr().err
    assert f"650 not printed; all 700 are in {errors} (columns: line, external_id, field, reason)" in err
    assert len(errors.read_text().splitlines()) == 701

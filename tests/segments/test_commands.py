"""`ecrm segment count | preview | explain` on SQLite and PostgreSQL, through the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ecrm.cli import main
from ecrm.db import connect, session_factory
from tests.conftest import ROOT
from tests.factories import add_profile

VIP = """name: vip
description: People with many points
all:
  - {field: traits.points, op: gte, value: 100}
  - not: {field: locale, op: eq, value: de}
"""


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "vip.yaml").write_text(VIP)
    path = tmp_path / "ecrm.yaml"
    path.write_text(f"database_url: {db_url}\ntemplates_dir: {ROOT / 'templates'}\nsegments_dir: {segments}\n")
    return path


def seed(db_url: str) -> None:
    async def go() -> None:
        async with connect(db_url) as engine:
            sessions = session_factory(engine)
            await add_profile(sessions, external_id="fa-rich", locale="fa", phone="+989121234567",
                              traits={"points": 500, "city": "تهران", "tier": "gold", "pet": "cat", "age": 40})
            await add_profile(sessions, external_id="th-rich", locale="th", consent=None, traits={"points": "120"})
            await add_profile(sessions, external_id="de-rich", locale="de", traits={"points": 900})
            await add_profile(sessions, external_id="en-poor", traits={"points": 3})
            await add_profile(sessions, external_id="[/bold] [red]x", traits={"points": 100, "n": "[/]"})

    asyncio.run(go())


def ecrm(config: Path, *args: str) -> int:
    return main(["--config", str(config), "segment", *args])


def test_count_prints_the_number_and_json(config: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url)
    assert ecrm(config, "count", "vip") == 0
    assert capsys.readouterr().out.strip() == "3"
    assert ecrm(config, "count", str(config.parent / "segments" / "vip.yaml"), "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["segment"], body["count"], body["channel"]) == ("vip", 3, None)
    assert ecrm(config, "count", "vip", "--channel", "email") == 0  # th-rich has not agreed to email
    assert capsys.readouterr().out.strip() == "2"
    assert ecrm(config, "count", "vip", "--channel", "sms") == 0  # the one phone number has no SMS consent
    assert capsys.readouterr().out.strip() == "0"


def test_preview_lists_matching_profiles_in_a_table_and_json(config: Path, db_url: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url)
    assert ecrm(config, "preview", "vip", "--limit", "20") == 0
    out = capsys.readouterr().out
    assert "fa-rich" in out and "th-rich" in out and "+989121234567" in out and 'city="تهران"' in out
    assert "(+2)" in out  # five traits: three shown
    assert "[/bold] [red]x" in out and '"[/]"' in out  # as stored, not read as markup
    assert "en-poor" not in out and "de-rich" not in out
    assert ecrm(config, "preview", "vip", "--limit", "1", "--json") == 0
    profiles = json.loads(capsys.readouterr().out)["profiles"]
    assert [p["external_id"] for p in profiles] == ["fa-rich"]
    assert profiles[0]["traits"]["city"] == "تهران" and profiles[0]["locale"] == "fa"


def test_preview_refuses_a_limit_out_of_range(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ecrm(config, "preview", "vip", "--limit", "0") == 1
    assert capsys.readouterr().err.strip() == "error: --limit takes a number from 1 to 1000"


def test_explain_shows_the_sql_with_literals_and_the_plan_on_postgresql(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db_url)
    assert ecrm(config, "explain", "vip") == 0
    out = capsys.readouterr().out
    assert "FROM profiles" in out and ">= 100.0" in out and "'de'" in out
    if db_url.startswith("postgresql"):
        assert "-- plan" in out and "Scan" in out
    else:
        assert "EXPLAIN is shown on PostgreSQL only" in out
    assert ecrm(config, "explain", "vip", "--json", "--channel", "email") == 0
    body = json.loads(capsys.readouterr().out)
    assert "consents" in body["sql"] and body["dialect"] == db_url.split("+")[0]
    assert (body["plan"] is None) == db_url.startswith("sqlite")
    if db_url.startswith("postgresql"):
        assert ecrm(config, "explain", "vip", "--analyze") == 0
        assert "actual time" in capsys.readouterr().out


def test_a_bad_segment_file_is_refused_naming_file_line_and_key(config: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = config.parent / "segments" / "bad.yaml"
    bad.write_text("name: bad\nall:\n  - {field: traits.points, op: bigger, value: 1}\n")
    assert ecrm(config, "count", "bad") == 1
    err = capsys.readouterr().err
    assert f"{bad}:3 all[0].op" in err
    assert ecrm(config, "count", "missing") == 1
    assert "missing.yaml" in capsys.readouterr().err


def test_explain_runs_a_calendar_window_whose_start_differs_by_time_zone(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`this_year` starts at each zone's midnight: a CASE of timestamps, written as typed literals
    (a bare string in each branch made the CASE text on PostgreSQL: no `timestamptz >= text`)."""
    seed(db_url)
    window = config.parent / "segments" / "this_year.yaml"
    window.write_text("name: this_year\nall:\n  - {metric: total_spent, currency: EUR, window: this_year, "
                      "op: gt, value: 100}\n")
    assert ecrm(config, "explain", "this_year", "--analyze") == 0
    out = capsys.readouterr().out
    assert "CASE WHEN" in out
    if db_url.startswith("postgresql"):
        assert "TIMESTAMP WITH TIME ZONE '" in out and "actual time" in out

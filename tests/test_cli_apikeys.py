"""`ecrm apikey create|list|revoke`, run as the operator runs them (a subprocess), on SQLite and
PostgreSQL; mistakes are one line on stderr and exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import check_api_key
from ecrm.api.scopes import Scope
from ecrm.cli import main
from tests.test_cli_failures import ecrm, one_error_line


async def test_create_list_and_revoke_a_scoped_key(
        db_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]) -> None:
    env = {"ECRM_DATABASE_URL": db_url}
    created = ecrm(tmp_path, "apikey", "create", "shop", "--scope", "ingest", "--scope", "admin", **env)
    assert created.returncode == 0, created.stderr
    assert "'shop', scopes ingest, admin (shown once" in created.stdout
    key = created.stdout.splitlines()[-1]
    assert ecrm(tmp_path, "apikey", "create", "web", **env).returncode == 0  # default: ingest only
    async with sessions() as session:
        found = await check_api_key(session, key)
    assert found is not None and found.scopes == {Scope.INGEST, Scope.ADMIN}

    again = ecrm(tmp_path, "apikey", "create", "shop", **env)
    assert again.returncode == 1
    assert one_error_line(again.stderr) == ("error: an API key named 'shop' is already in use: pick another name, "
                                            "or `ecrm apikey revoke shop` first")

    revoked = ecrm(tmp_path, "apikey", "revoke", "shop", **env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"API key 'shop' ({key[:14]}…) revoked" in revoked.stdout
    listed = ecrm(tmp_path, "apikey", "list", "--json", **env)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert [(k["name"], k["prefix"], k["scopes"], k["revoked_at"] is None) for k in keys] == [
        ("shop", key[:14], ["ingest", "admin"], False), ("web", keys[1]["prefix"], ["ingest"], True)]
    assert key[14:] not in listed.stdout
    async with sessions() as session:
        assert await check_api_key(session, key) is None

    gone = ecrm(tmp_path, "apikey", "revoke", "shop", **env)
    assert gone.returncode == 1
    assert one_error_line(gone.stderr) == "error: no active API key is named 'shop'; `ecrm apikey list` shows them"


def test_the_list_is_a_table_with_scopes_and_revocation(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ECRM_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--config", "/nonexistent", "apikey", "list"]) == 0
    assert "API keys (0 active, 0 revoked)" in capsys.readouterr().out
    assert main(["--config", "/nonexistent", "apikey", "create", "back office", "--scope", "admin"]) == 0
    assert main(["--config", "/nonexistent", "apikey", "create", "mailer", "--scope", "send"]) == 0
    assert main(["--config", "/nonexistent", "apikey", "revoke", "mailer"]) == 0
    capsys.readouterr()
    assert main(["--config", "/nonexistent", "apikey", "list"]) == 0
    out = capsys.readouterr().out
    assert "API keys (1 active, 1 revoked)" in out
    office = next(line for line in out.splitlines() if "back office" in line)
    mailer = next(line for line in out.splitlines() if "mailer" in line)
    assert "admin" in office and "UTC" in office and office.count("UTC") == 1
    assert "send" in mailer and mailer.count("UTC") == 2


def test_an_unknown_scope_or_a_strange_name_to_revoke_is_refused(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ECRM_DATABASE_URL", db_url)
    with pytest.raises(SystemExit) as exit_code:
        main(["--config", "/nonexistent", "apikey", "create", "shop", "--scope", "root"])
    assert exit_code.value.code == 2
    assert "argument --scope: invalid choice: 'root'" in capsys.readouterr().err
    assert main(["--config", "/nonexistent", "apikey", "revoke", "shop\nADMIN"]) == 1
    assert one_error_line(capsys.readouterr().err) == ("error: no active API key is named 'shop\\nADMIN'; "
                                                       "`ecrm apikey list` shows them")

"""serve, worker and campaign launch refuse the published secret key, a short one and a public_url
without HTTPS, unless it is a local try-out (SQLite, links on this machine) or --dev is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.cli import main
from ecrm.errors import UnreachableError, UnsafeSettingsError
from ecrm.preflight import SHIPPED_SECRET, check, check_sqlite_folder
from ecrm.settings import Settings, load_settings
from tests.conftest import ROOT

PG = "postgresql+asyncpg://ecrm@db.internal:5432/ecrm"
STRONG = "x" * 32


def settings(**overrides: str) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, **overrides)


def refusals(s: Settings, dev: bool = False, listen_host: str | None = None) -> list[str]:
    try:
        check(s, dev, listen_host)
    except UnsafeSettingsError as exc:
        assert str(exc).splitlines() == exc.problems
        return exc.problems
    return []


def test_the_shipped_key_and_a_plain_http_public_url_are_refused_in_production() -> None:
    found = refusals(settings(database_url=PG))
    assert len(found) == 2
    assert found[0].startswith("secret_key is the published development key") and "ECRM_SECRET_KEY" in found[0]
    assert found[1].startswith("public_url http://127.0.0.1:8080 is not HTTPS") and "RFC 8058" in found[1]
    assert all(line.endswith("or pass --dev on a test machine") for line in found)


def test_a_short_key_is_refused() -> None:
    found = refusals(settings(database_url=PG, secret_key="s" * 31, public_url="https://crm.shop.example"))
    assert found == ["secret_key has 31 characters, fewer than 32: set ECRM_SECRET_KEY to the output of "
                     "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or pass --dev on a test "
                     "machine"]


def test_a_strong_key_and_https_pass() -> None:
    assert refusals(settings(database_url=PG, secret_key=STRONG, public_url="https://crm.shop.example")) == []


def test_dev_lets_anything_through() -> None:
    assert refusals(settings(database_url=PG), dev=True) == []


@pytest.mark.parametrize("public_url", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"])
def test_a_local_try_out_on_sqlite_with_links_on_this_machine_passes(public_url: str) -> None:
    assert refusals(settings(public_url=public_url)) == []
    assert refusals(settings(public_url=public_url), listen_host="127.0.0.1") == []


def test_sqlite_is_not_a_try_out_when_links_or_the_api_reach_other_machines() -> None:
    assert len(refusals(settings(public_url="http://shop.example"))) == 2
    assert len(refusals(settings(), listen_host="0.0.0.0")) == 2
    assert settings().secret_key == SHIPPED_SECRET


def test_a_sqlite_file_in_a_missing_folder_is_named(tmp_path: Path) -> None:
    check_sqlite_folder(f"sqlite+aiosqlite:///{tmp_path / 'here.db'}")
    check_sqlite_folder(PG)
    with pytest.raises(UnreachableError, match=f"the folder {tmp_path / 'no'} does not exist"):
        check_sqlite_folder(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'here.db'}")


@pytest.fixture
def production(tmp_path: Path) -> Path:
    """Settings that look like production (PostgreSQL, Redis) but keep the shipped key: the
    commands must refuse before connecting to anything."""
    path = tmp_path / "ecrm.yaml"
    path.write_text(f"database_url: postgresql+asyncpg://ecrm@127.0.0.1:9/ecrm\nredis_url: redis://127.0.0.1:9\n"
                    f"templates_dir: {ROOT / 'templates'}\n")
    return path


@pytest.mark.parametrize("command", [["serve"], ["worker", "--burst"],
                                     ["campaign", "launch", str(ROOT / "campaigns" / "welcome.yaml")]])
def test_the_commands_refuse_in_a_line_each(production: Path, command: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(production), *command]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["error", "error"]
    assert "secret_key is the published development key" in err[0] and "is not HTTPS" in err[1]


def test_with_dev_a_launch_goes_on_to_the_database(production: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(production), "campaign", "launch", "--dev",
                 str(ROOT / "campaigns" / "welcome.yaml")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot connect: ")

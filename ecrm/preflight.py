"""Refuse to serve, work or launch with settings that are safe only on a developer's machine.

`ecrm serve`, `ecrm worker` and `ecrm campaign launch` call `check` before they start. Outside
a local try-out, and unless `--dev` is given, they refuse:
- the shipped `secret_key`, which is published: with it anyone can sign unsubscribe links and,
  ids being sequential, withdraw every customer's email consent; and a key shorter than
  `MIN_SECRET_LENGTH` characters;
- a `public_url` that is not HTTPS: RFC 8058 one-click unsubscribe links must be HTTPS.

A local try-out is a SQLite database with a `public_url` on this machine (and, for `serve`,
listening on loopback only): nobody else can follow its links or reach its API.

`check_sqlite_folder` runs before any command opens its database: a SQLite file in a folder
that does not exist is named in a line, before the driver fails on it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from ecrm.errors import UnreachableError, UnsafeSettingsError
from ecrm.settings import Settings

SHIPPED_SECRET: str = Settings.model_fields["secret_key"].default  # published in this repository
MIN_SECRET_LENGTH = 32
NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check(settings: Settings, dev: bool = False, listen_host: str | None = None) -> None:
    """Raise `UnsafeSettingsError` naming every unsafe setting, unless `dev` or a local try-out."""
    if dev or is_local(settings, listen_host):
        return
    found = problems(settings)
    if found:
        raise UnsafeSettingsError(found)


def is_local(settings: Settings, listen_host: str | None = None) -> bool:
    """SQLite, links pointing at this machine, and (if given) an API listening on loopback only."""
    hosts = [urlsplit(settings.public_url).hostname or ""]
    if listen_host is not None:
        hosts.append(listen_host)
    return settings.is_sqlite and all(is_loopback(host) for host in hosts)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def problems(settings: Settings) -> list[str]:
    """One line per unsafe setting, each saying how to fix it."""
    found = []
    escape = "or pass --dev on a test machine"
    if settings.secret_key == SHIPPED_SECRET:
        found.append(f"secret_key is the published development key, so anyone could sign unsubscribe links: "
                     f"set ECRM_SECRET_KEY (in the environment or .env) to the output of `{NEW_KEY}`, {escape}")
    elif len(settings.secret_key) < MIN_SECRET_LENGTH:
        found.append(f"secret_key has {len(settings.secret_key)} characters, fewer than {MIN_SECRET_LENGTH}: "
                     f"set ECRM_SECRET_KEY to the output of `{NEW_KEY}`, {escape}")
    if urlsplit(settings.public_url).scheme != "https":
        found.append(f"public_url {settings.public_url} is not HTTPS, and one-click unsubscribe links (RFC 8058) "
                     f"must be: set public_url (or ECRM_PUBLIC_URL) to your https:// address, {escape}")
    return found


def check_sqlite_folder(database_url: str) -> None:
    """Raise `UnreachableError` if `database_url` is a SQLite file whose folder does not exist."""
    if not database_url.startswith("sqlite"):
        return
    database = make_url(database_url).database
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        raise UnreachableError(f"database_url {database_url}: the folder {Path(database).parent} does not exist; "
                               f"create it or point database_url (ECRM_DATABASE_URL) at an existing folder")

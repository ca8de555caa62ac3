"""`ecrm apikey list` as a rich table: name, key prefix, scopes, created, revoked (times in UTC).
Use is not tracked per key (that would be a write per request), so there is no "last used"."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table

from ecrm.api.models import ApiKey
from ecrm.api.scopes import describe


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


def key_table(keys: list[ApiKey]) -> Table:
    table = Table(title=f"API keys ({sum(k.revoked_at is None for k in keys)} active, "
                        f"{sum(k.revoked_at is not None for k in keys)} revoked)")
    for column in ("name", "key", "scopes", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.name, f"ecrm_{key.prefix}_…", describe(key.scopes), _when(key.created_at),
                      _when(key.revoked_at), style="dim" if key.revoked_at else None)
    return table

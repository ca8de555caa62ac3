"""What migrations that alter `deliveries` need on SQLite, which alters a table by rebuilding it."""

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op


@contextmanager
def response_links_kept() -> Iterator[None]:
    """With foreign keys on, dropping the old `deliveries` sets every `responses.delivery_id` to
    NULL (ON DELETE SET NULL). The pragma cannot be turned off inside the migration's
    transaction, so the links are kept aside and put back. PostgreSQL alters the table in place."""
    if op.get_context().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMP TABLE kept_response_links AS "
               "SELECT id, delivery_id FROM responses WHERE delivery_id IS NOT NULL")
    yield
    op.execute("UPDATE responses SET delivery_id = (SELECT k.delivery_id FROM kept_response_links AS k "
               "WHERE k.id = responses.id) WHERE id IN (SELECT id FROM kept_response_links)")
    op.execute("DROP TABLE kept_response_links")

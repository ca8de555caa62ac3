"""deliveries.run_id without a foreign key: its check cost the plan's bulk insert more than
the insert itself (see ecrm.deliveries.models)

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with _response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_run_id_campaign_runs", type_="foreignkey")


def downgrade() -> None:
    with _response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_deliveries_run_id_campaign_runs", "campaign_runs", ["run_id"], ["id"],
                                    ondelete="CASCADE")


@contextmanager
def _response_links_kept() -> Iterator[None]:
    """SQLite alters a table by rebuilding it, and with foreign keys on, dropping the old
    `deliveries` sets every `responses.delivery_id` to NULL (ON DELETE SET NULL). The pragma
    cannot be turned off inside the migration's transaction, so the links are kept aside and
    put back. PostgreSQL alters the table in place."""
    if op.get_context().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMP TABLE kept_response_links AS "
               "SELECT id, delivery_id FROM responses WHERE delivery_id IS NOT NULL")
    yield
    op.execute("UPDATE responses SET delivery_id = (SELECT k.delivery_id FROM kept_response_links AS k "
               "WHERE k.id = responses.id) WHERE id IN (SELECT id FROM kept_response_links)")
    op.execute("DROP TABLE kept_response_links")

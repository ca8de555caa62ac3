"""deliveries.run_id without a foreign key: its check cost the plan's bulk insert more than
the insert itself (see ecrm.deliveries.models)

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

from alembic import op

from ecrm.migrations.sqlite_rebuild import response_links_kept

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_run_id_campaign_runs", type_="foreignkey")


def downgrade() -> None:
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_deliveries_run_id_campaign_runs", "campaign_runs", ["run_id"], ["id"],
                                    ondelete="CASCADE")

"""deliveries keyed by (profile, run, channel): one integer unique index replaces the text
idempotency key and the profile index, and profile_id loses its foreign key (its row-by-row
check cost the plan's insert more than the insert itself; see ecrm.deliveries.models)

Revision ID: 0005
Revises: 0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ecrm.migrations.sqlite_rebuild import response_links_kept

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_profile_id_profiles", type_="foreignkey")
        batch_op.drop_constraint("uq_deliveries_idempotency_key", type_="unique")
        batch_op.drop_index("ix_deliveries_profile_id")
        batch_op.drop_column("idempotency_key")
        batch_op.create_unique_constraint("uq_deliveries_profile_id_run_id_channel",
                                          ["profile_id", "run_id", "channel"])


def downgrade() -> None:
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=120), nullable=True))
    op.execute("UPDATE deliveries SET idempotency_key = "
               "CAST(run_id AS VARCHAR) || ':main:' || CAST(profile_id AS VARCHAR) || ':' || channel")
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("idempotency_key", existing_type=sa.String(length=120), nullable=False)
        batch_op.drop_constraint("uq_deliveries_profile_id_run_id_channel", type_="unique")
        batch_op.create_unique_constraint("uq_deliveries_idempotency_key", ["idempotency_key"])
        batch_op.create_index("ix_deliveries_profile_id", ["profile_id"], unique=False)
        batch_op.create_foreign_key("fk_deliveries_profile_id_profiles", "profiles", ["profile_id"], ["id"],
                                    ondelete="CASCADE")

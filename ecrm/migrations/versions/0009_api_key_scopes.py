"""API keys carry scopes (ingest, send, admin; ecrm.api.scopes) and their names are unique among
keys not revoked.

Keys that exist before this migration get every scope, so no integration breaks on upgrade;
narrow them by creating scoped keys and revoking the old ones. Where several live keys shared a
name, the oldest keeps it and each other one is renamed `NAME-PREFIX` (its key prefix), so
`ecrm apikey revoke NAME` names one key.

Revision ID: 0009
Revises: 0008

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVERY_SCOPE = "admin ingest send"
NAME_MAX = 100
LIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=100), nullable=False, server_default=EVERY_SCOPE))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("scopes", existing_type=sa.String(length=100), existing_nullable=False,
                              server_default=None)
    _rename_shared_live_names()
    op.create_index("uq_api_keys_name_live", "api_keys", ["name"], unique=True, sqlite_where=LIVE,
                    postgresql_where=LIVE)


def _rename_shared_live_names() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        "SELECT id, name, prefix FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id")).all()
    seen: set[str] = set()
    for key_id, name, prefix in rows:
        if name in seen:
            renamed = f"{name[:NAME_MAX - len(prefix) - 1]}-{prefix}"
            connection.execute(sa.text("UPDATE api_keys SET name = :name WHERE id = :id"),
                               {"name": renamed, "id": key_id})
        seen.add(name)


def downgrade() -> None:
    op.drop_index("uq_api_keys_name_live", table_name="api_keys", sqlite_where=LIVE, postgresql_where=LIVE)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("scopes")

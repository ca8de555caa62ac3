"""sends and delivery states: deliveries belong to a send (a campaign run, a journey step, a
transactional request; see ecrm.deliveries.models), batches are a send's, and a delivery's
status comes with a reason (ecrm.deliveries.states)

Every existing campaign run becomes a send with the same id, so deliveries keep their numbers;
a `failed` delivery gets the state its error text meant: in doubt after an interruption
(`unknown`), skipped for an erased profile, a compose error (`failed`, technical), or a refusal.

Revision ID: 0006
Revises: 0005

"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import ecrm.db
from ecrm import jsontext
from ecrm.migrations.sqlite_rebuild import response_links_kept

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INTERRUPTED = ("interrupted while being handed to the provider; not resent, because it may have "
               "been delivered already")
ERASED = "not sent: the profile was erased"


def upgrade() -> None:
    _create_sends()
    _copy_runs_to_sends()
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=24), nullable=True))
        batch_op.drop_constraint("uq_deliveries_profile_id_run_id_channel", type_="unique")
        batch_op.drop_index("ix_deliveries_run_id_batch")
        batch_op.alter_column("run_id", new_column_name="send_id", existing_type=ID, existing_nullable=False)
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_deliveries_profile_id_send_id_channel",
                                          ["profile_id", "send_id", "channel"])
        batch_op.create_index("ix_deliveries_send_id_batch", ["send_id", "batch"], unique=False)
    _name_failures()
    _create_send_batches()
    op.execute("INSERT INTO send_batches (send_id, batch, done_at, attempt, inflight_first, inflight_last) "
               "SELECT run_id, batch, done_at, attempt, inflight_first, inflight_last FROM run_batches")
    op.drop_table("run_batches")
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_column("planned_at")  # the send's now


def _create_sends() -> None:
    op.create_table(
        "sends",
        sa.Column("id", ID, nullable=False),
        sa.Column("source_kind", sa.String(length=24), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", ecrm.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("planned_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("done_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint("source_kind", "source_id", "channel",
                            name=op.f("uq_sends_source_kind_source_id_channel")),
    )


def _copy_runs_to_sends() -> None:
    bind = op.get_bind()
    runs = bind.execute(sa.text("SELECT r.id, r.spec, r.scheduled_at, r.planned_at, r.finished_at, r.status "
                                "FROM campaign_runs AS r")).all()
    sends = sa.table("sends", *(sa.column(name) for name in (
        "id", "source_kind", "source_id", "channel", "template", "label", "created_at", "planned_at", "done_at")))
    rows = [_send_of(run) for run in runs]
    if rows:
        op.bulk_insert(sends, rows)
    if bind.dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('sends', 'id'), coalesce(max(id), 0) + 1, false) FROM sends")


def _send_of(run: Any) -> dict[str, Any]:
    spec = run.spec if isinstance(run.spec, dict) else jsontext.loads(run.spec)
    return {"id": run.id, "source_kind": "campaign_run", "source_id": run.id, "channel": spec.get("channel", "email"),
            "template": spec.get("template", ""), "label": spec.get("name", ""), "created_at": run.scheduled_at,
            "planned_at": run.planned_at, "done_at": run.finished_at if run.status == "done" else None}


def _name_failures() -> None:
    op.execute(sa.text("UPDATE deliveries SET status = 'unknown', reason = 'interrupted' "
                       "WHERE status = 'failed' AND error = :e").bindparams(e=INTERRUPTED))
    op.execute(sa.text("UPDATE deliveries SET status = 'skipped', reason = 'erased' "
                       "WHERE status = 'failed' AND error = :e").bindparams(e=ERASED))
    op.execute("UPDATE deliveries SET reason = 'technical' WHERE status = 'failed' AND error LIKE 'could not compose%'")
    op.execute("UPDATE deliveries SET reason = 'permanent' WHERE status = 'failed' AND reason IS NULL")
    op.execute("UPDATE deliveries SET reason = 'hard' WHERE status = 'bounced' AND reason IS NULL")


def _create_send_batches() -> None:
    op.create_table(
        "send_batches",
        sa.Column("send_id", ID, autoincrement=False, nullable=False),
        sa.Column("batch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("done_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("inflight_first", sa.BigInteger(), nullable=True),
        sa.Column("inflight_last", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("send_id", "batch", name=op.f("pk_send_batches")),
    )


def downgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_at", ecrm.db.UtcDateTime(timezone=True), nullable=True))
    op.execute("UPDATE campaign_runs SET planned_at = (SELECT s.planned_at FROM sends AS s "
               "WHERE s.source_kind = 'campaign_run' AND s.source_id = campaign_runs.id)")
    op.create_table(
        "run_batches",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("batch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("done_at", ecrm.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("inflight_first", sa.BigInteger(), nullable=True),
        sa.Column("inflight_last", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["campaign_runs.id"], name=op.f("fk_run_batches_run_id_campaign_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "batch", name=op.f("pk_run_batches")),
    )
    op.execute("INSERT INTO run_batches (run_id, batch, done_at, attempt, inflight_first, inflight_last) "
               "SELECT s.source_id, b.batch, b.done_at, b.attempt, b.inflight_first, b.inflight_last "
               "FROM send_batches AS b JOIN sends AS s ON s.id = b.send_id WHERE s.source_kind = 'campaign_run'")
    op.drop_table("send_batches")
    op.execute("UPDATE deliveries SET send_id = (SELECT s.source_id FROM sends AS s WHERE s.id = deliveries.send_id)")
    op.execute(sa.text("UPDATE deliveries SET status = 'failed', error = :e WHERE status = 'unknown'")
               .bindparams(e=INTERRUPTED))
    op.execute(sa.text("UPDATE deliveries SET status = 'failed', error = :e WHERE status = 'skipped'")
               .bindparams(e=ERASED))
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_send_id_batch")
        batch_op.drop_constraint("uq_deliveries_profile_id_send_id_channel", type_="unique")
        batch_op.alter_column("send_id", new_column_name="run_id", existing_type=ID, existing_nullable=False)
        batch_op.drop_column("reason")
    with response_links_kept(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_deliveries_profile_id_run_id_channel",
                                          ["profile_id", "run_id", "channel"])
        batch_op.create_index("ix_deliveries_run_id_batch", ["run_id", "batch"], unique=False)
    op.drop_table("sends")

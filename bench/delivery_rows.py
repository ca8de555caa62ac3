"""What one delivery row costs PostgreSQL, by schema variant: planned then recorded, or inserted
once at send time.

    python -m bench.delivery_rows [-n 100000] [--variants current fillfactor80 run-fk ...]

Each variant gets a fresh database built by ecrm's migrations, N seeded profiles and one run,
then changes the schema (an ALTER) and times, on one raw asyncpg connection, the PostgreSQL
backend's CPU (from /proc) per row:

- plan: one `INSERT ... SELECT` per 1,000 profiles, as `plan_run` does;
- record: one `UPDATE ... FROM unnest(ids, message ids)` per 200 rows, as a send job does;
- or, for the insert-at-send variants, one `INSERT ... SELECT FROM unnest` per 200 rows with the
  outcome already in it.

It also prints how many updates were HOT (the new version on the same page, no index written)
and the table's size. Variants: current (the schema as migrated), fillfactor80 (before
migration 0004), fillfactor50, run-fk (before migration 0003), profile-fk, text-key (before
migration 0005: text idempotency key, profile index, profile foreign key), insert-at-send (at
fillfactor 100, since no row would grow).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.send import PG_ADMIN, fresh_postgres, seed
from ecrm import loop

ALTER = {
    "current": [],
    "fillfactor80": ["ALTER TABLE deliveries SET (fillfactor = 80)"],
    "fillfactor50": ["ALTER TABLE deliveries SET (fillfactor = 50)"],
    "run-fk": ["ALTER TABLE deliveries ADD CONSTRAINT fk_run FOREIGN KEY (run_id) REFERENCES campaign_runs (id)"],
    "profile-fk": ["ALTER TABLE deliveries ADD CONSTRAINT fk_profile FOREIGN KEY (profile_id) "
                   "REFERENCES profiles (id)"],
    "text-key": [  # before migration 0005: a text idempotency key, a profile index and the profile FK
        "ALTER TABLE deliveries ADD COLUMN idempotency_key varchar(120)",
        "ALTER TABLE deliveries DROP CONSTRAINT uq_deliveries_profile_id_run_id_channel",
        "CREATE UNIQUE INDEX uq_key ON deliveries (idempotency_key)",
        "CREATE INDEX ix_profile ON deliveries (profile_id)",
        "ALTER TABLE deliveries ADD CONSTRAINT fk_profile FOREIGN KEY (profile_id) REFERENCES profiles (id)"],
    "insert-at-send": ["ALTER TABLE deliveries SET (fillfactor = 100)"],
    "no-batch-index": ["DROP INDEX ix_deliveries_run_id_batch"],  # batches found by id range instead
}
PLAN = """INSERT INTO deliveries (run_id, batch, profile_id, channel, variant, status, attempts, queued_at)
SELECT $1, $2, p.id, 'email', 'default', 'queued', 0, $3
FROM profiles p WHERE p.id = ANY($4::bigint[]) ON CONFLICT DO NOTHING"""
PLAN_WITH_KEY = """INSERT INTO deliveries (run_id, batch, profile_id, channel, variant, idempotency_key, status,
                        attempts, queued_at)
SELECT $1, $2, p.id, 'email', 'default', $1::bigint || ':main:' || p.id || ':email', 'queued', 0, $3
FROM profiles p WHERE p.id = ANY($4::bigint[]) ON CONFLICT DO NOTHING"""
RECORD = """UPDATE deliveries AS d SET attempts = d.attempts + 1, status = 'sent', provider = 'smtp',
    provider_message_id = v.val, error = NULL, sent_at = $1
FROM unnest($2::bigint[], $3::text[]) AS v(id, val) WHERE d.id = v.id"""
INSERT_SENT = """INSERT INTO deliveries (run_id, batch, profile_id, channel, variant, status, attempts,
                        provider, provider_message_id, queued_at, sent_at)
SELECT $1, $2, v.id, 'email', 'default', 'sent', 1, 'smtp', v.val, $3, $3
FROM unnest($4::bigint[], $5::text[]) AS v(id, val)"""


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def message_id(row_id: int) -> str:
    return f"<{row_id}.0123456789abcdef@shop.example>"  # the length of ecrm's Message-IDs


async def measure(variant: str, n: int) -> str:
    url = await fresh_postgres("ecrm_bench_rows")
    await seed(url, n)
    connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/ecrm_bench_rows")
    try:
        for statement in ALTER[variant]:
            await connection.execute(statement)
        await connection.execute("VACUUM ANALYZE")
        run_id = await connection.fetchval(
            "INSERT INTO campaigns (name, source, spec, created_at, updated_at) VALUES ('b', 'b', '{}', now(), now())"
            " RETURNING id")
        run_id = await connection.fetchval(
            "INSERT INTO campaign_runs (campaign_id, run_key, spec, status, plans, scheduled_at)"
            " VALUES ($1, 'b', '{}', 'running', 0, now()) RETURNING id", run_id)
        ids = [r[0] for r in await connection.fetch("SELECT id FROM profiles ORDER BY id")]
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        if variant.startswith("insert-at-send"):
            plan, record = await insert_at_send(connection, pid, run_id, ids), 0.0
        else:
            plan, record = await plan_then_record(connection, pid, run_id, ids,
                                                  PLAN_WITH_KEY if variant == "text-key" else PLAN)
    finally:
        await connection.close()  # the backend exits and flushes its statistics
    return await variant_line(variant, n, plan, record)


async def plan_then_record(connection: asyncpg.Connection, pid: int, run_id: int,
                           ids: list[int], plan_statement: str) -> tuple[float, float]:
    now, started = datetime.now(UTC), backend_cpu(pid)
    for batch, start in enumerate(range(0, len(ids), 1000)):
        await connection.execute(plan_statement, run_id, batch, now, ids[start : start + 1000])
    planned = backend_cpu(pid)
    rows = [r[0] for r in await connection.fetch("SELECT id FROM deliveries ORDER BY id")]
    recording = backend_cpu(pid)
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        async with connection.transaction():
            await connection.execute(RECORD, now, chunk, [message_id(i) for i in chunk])
    return planned - started, backend_cpu(pid) - recording


async def insert_at_send(connection: asyncpg.Connection, pid: int, run_id: int, ids: list[int]) -> float:
    now, started = datetime.now(UTC), backend_cpu(pid)
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        async with connection.transaction():
            await connection.execute(INSERT_SENT, run_id, start // 1000, now, chunk, [message_id(i) for i in chunk])
    return backend_cpu(pid) - started


async def variant_line(variant: str, n: int, plan: float, record: float) -> str:
    connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/ecrm_bench_rows")
    try:
        updated, hot = await connection.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'")
        size = await connection.fetchval("SELECT pg_relation_size('deliveries')") / 2**20
    finally:
        await connection.close()
    per = 1e6 / n
    if variant.startswith("insert-at-send"):
        head = f"{variant:30} insert at send {plan * per:5.1f} µs/row"
    else:
        head = f"{variant:30} plan {plan * per:5.1f} µs/row  record {record * per:5.1f} µs/row"
    return f"{head}  total {(plan + record) * per:5.1f} µs/row  table {size:.1f} MB  HOT {hot} of {updated}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_rows", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--variants", nargs="+", choices=list(ALTER), default=list(ALTER))
    args = parser.parse_args(argv)
    print(f"PostgreSQL backend CPU per delivery row, {args.n} rows:")
    for variant in args.variants:
        print(loop.run(measure(variant, args.n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

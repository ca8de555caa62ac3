"""What one small transaction costs the client: raw asyncpg against SQLAlchemy's async engine.

    python -m bench.txn_overhead [-n 3000]

Each iteration is what the send path does once per chunk to mark the next chunk in flight:
BEGIN, a one-row UPDATE, COMMIT. Printed: client CPU ms per transaction for raw asyncpg, for
SQLAlchemy Core with a statement built per call (as `deliveries.claims` does), and with one
statement built once and reused with bound parameters.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, insert, update

from bench.send import PG_ADMIN, fresh_postgres
from ecrm import loop
from ecrm.db import create_engine

METADATA = MetaData()
MARKS = Table("marks", METADATA, Column("id", Integer, primary_key=True), Column("attempt", Integer),
              Column("first", Integer), Column("last", Integer))
REUSED = update(MARKS).where(MARKS.c.id == bindparam("b_id"), MARKS.c.attempt == bindparam("b_attempt")).values(
    first=bindparam("b_first"), last=bindparam("b_last"))


async def cpu_ms(n: int, once: Callable[[], Awaitable[None]]) -> float:
    for _ in range(n // 10):  # warm caches and prepared statements
        await once()
    started = time.process_time()
    for _ in range(n):
        await once()
    return (time.process_time() - started) * 1000 / n


async def run(n: int) -> dict[str, float]:
    url = await fresh_postgres("ecrm_bench_txn")
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
        await connection.execute(insert(MARKS).values(id=1, attempt=1))
    raw = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/ecrm_bench_txn")

    async def asyncpg_raw() -> None:
        async with raw.transaction():
            await raw.execute('UPDATE marks SET "first" = $1, "last" = $2 WHERE id = $3 AND attempt = $4',
                              10, 20, 1, 1)

    async def built_per_call() -> None:
        async with engine.begin() as connection:
            await connection.execute(update(MARKS).where(MARKS.c.id == 1, MARKS.c.attempt == 1)
                                     .values(first=10, last=20))

    async def built_once() -> None:
        async with engine.begin() as connection:
            await connection.execute(REUSED, {"b_id": 1, "b_attempt": 1, "b_first": 10, "b_last": 20})

    try:
        return {name: await cpu_ms(n, once) for name, once in
                (("asyncpg", asyncpg_raw), ("sqlalchemy, statement per call", built_per_call),
                 ("sqlalchemy, statement reused", built_once))}
    finally:
        await raw.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.txn_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args(argv)
    for name, ms in loop.run(run(args.n)).items():
        print(f"{name:32} {ms:.3f} ms client CPU per transaction (BEGIN, one-row UPDATE, COMMIT)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`accept.submit` on PostgreSQL in one statement, on the messages' own small asyncpg pool.

The request's Idempotency-Key claim, its answer, the send, its delivery and its batch are
written by one statement of data-modifying CTEs, so accepting a message is one round trip to
the database instead of ten (BEGIN, claim, profile, send, delivery, batch, plan, answer,
COMMIT): under a campaign's load every round trip waits for the cores. The ids are drawn from
the tables' sequences first, so the claim row is inserted with its answer already in it (a
statement's CTEs cannot update a row a sibling inserted). The semantics are `accept`'s: the
claim's unique key makes a racing request with the same key wait for the first statement and
then insert nothing, after which it reads the stored answer, as a later retry does; the
template and channel are checked in this process, the profile and consent by the statement;
a refusal is stored like an acceptance. The pool is the messages' own (`POOL_SIZE`), so a
message never queues behind ingest for a connection.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from ecrm import jsontext
from ecrm.errors import ApiError
from ecrm.pg_pool import LazyPool
from ecrm.render.environment import TemplateCatalog
from ecrm.transactional.accept import Answer, MessageIn, precheck, refusal, replay, unconsented, unknown_profile
from ecrm.types import SendSource

POOL_SIZE = 4  # messages hold a connection for one statement

# $1 key, $2 request hash, $3 now, $4 external id, $5 channel, $6 a refusal's status found in
# this process (or NULL) and $7 its body, $8 whether the template is transactional, $9 the
# template, $10 data, $11 the 404 body, $12 the 409 body, $13 the send's source kind
_SUBMIT = """WITH ids AS MATERIALIZED (
  SELECT nextval(pg_get_serial_sequence('transactional_messages', 'id')) AS message_id,
         nextval(pg_get_serial_sequence('sends', 'id')) AS send_id,
         nextval(pg_get_serial_sequence('deliveries', 'id')) AS delivery_id
), verdict AS MATERIALIZED (
  SELECT ids.*, p.id AS profile_id,
         CASE WHEN $6::smallint IS NOT NULL THEN $6::smallint
              WHEN p.id IS NULL THEN 404
              WHEN NOT $8::boolean AND c.state IS DISTINCT FROM 'granted' THEN 409
              ELSE 202 END AS status
  FROM ids LEFT JOIN profiles AS p ON p.external_id = $4
           LEFT JOIN consents AS c ON c.profile_id = p.id AND c.channel = $5
), claim AS (
  INSERT INTO transactional_messages (id, idempotency_key, request_hash, response_status, response, send_id,
                                      created_at)
  SELECT message_id, $1, $2, status,
         CASE status WHEN 202 THEN jsonb_build_object('id', message_id, 'delivery_id', delivery_id,
                                                      'status', 'queued')
                     WHEN 404 THEN $11::jsonb WHEN 409 THEN $12::jsonb ELSE $7::jsonb END,
         CASE WHEN status = 202 THEN send_id END, $3
  FROM verdict
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id, response_status, response, send_id
), send AS (
  INSERT INTO sends (id, source_kind, source_id, channel, template, label, created_at, planned_at, data)
  SELECT send_id, $13, id, $5, $9, $9, $3, $3, $10::jsonb FROM claim WHERE response_status = 202
  RETURNING id
), delivery AS (
  INSERT INTO deliveries (id, send_id, batch, profile_id, channel, variant, status, attempts, queued_at)
  SELECT v.delivery_id, s.id, 0, v.profile_id, $5, 'default', 'queued', 0, $3 FROM send AS s, verdict AS v
), batch AS (
  INSERT INTO send_batches (send_id, batch, attempt) SELECT id, 0, 0 FROM send
)
SELECT response_status, response, send_id FROM claim"""
_STORED = """SELECT request_hash, response_status, response, send_id FROM transactional_messages
WHERE idempotency_key = $1"""


class PgMessages:
    """Accepts messages on its own pool of the database `database_url` names."""

    def __init__(self, database_url: str) -> None:
        self._pool = LazyPool(database_url, POOL_SIZE, init=_codecs)

    async def submit(self, catalog: TemplateCatalog, key: str | None, digest: str, message: MessageIn,
                     now: datetime) -> Answer:
        """The answer to the request: new (the message planned, or refused) or the stored one."""
        try:
            transactional, refused = precheck(catalog, message), None
        except ApiError as error:
            transactional, refused = False, error
        async with (await self._pool.get()).acquire() as connection:
            row = await connection.fetchrow(
                _SUBMIT, key, digest, now, message.external_id, message.channel.value,
                refused.status if refused else None, refusal(refused) if refused else None, transactional,
                message.template, message.data, refusal(unknown_profile(message)),
                refusal(unconsented(message)), SendSource.TRANSACTIONAL.value)
            if row is not None:
                return Answer(row["response_status"], row["response"], row["send_id"])
            stored = await connection.fetchrow(_STORED, key)
        if stored is None:  # no claim and no row: cannot happen, a conflicting key's row is committed
            raise ApiError(409, "a request with this Idempotency-Key is being handled; retry in a moment",
                           field="Idempotency-Key")
        return replay(stored["request_hash"], stored["response_status"], stored["response"], stored["send_id"],
                      digest)

    async def close(self) -> None:
        await self._pool.close()


async def _codecs(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=_dumps, decoder=jsontext.loads, schema="pg_catalog")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

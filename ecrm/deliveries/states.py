"""The delivery state machine: every status, every reason, and every transition a delivery may
make. Nothing else in ecrm decides whether a delivery's status may change; the send path's
stores and every feedback source (mailbox receipts, provider callbacks) build their writes
from `may_move` and `PREDECESSORS` here.

    queued ──> sent ──> delivered ──> bounced (hard)
      │  │       │         ^
      │  │       └──> bounced (soft) ──> delivered | bounced (hard) | failed
      │  │       └──> failed
      │  └──> unknown ──> sent | delivered | bounced | failed     (a later receipt settles it)
      └──> failed | skipped                                       (never handed over)

The rules, from what providers really do (GOV.UK Notify's statuses, anymail's events):
- Monotone: a status never moves back. `delivered` never returns to `sent` when a late `sent`
  callback arrives after the delivery receipt; callbacks come out of order.
- Idempotent: the same status again is no change (a provider repeats a callback).
- `unknown` is "may have been sent": the send path lost track of a message after handing it
  over (a killed worker, an adapter bug). Only evidence from the provider settles it.
- A soft bounce is temporary: a later `delivered` or hard bounce still wins. A hard bounce after
  `delivered` wins too (a server that accepted, then bounced).
- `queued -> queued` is the send path's retry (the error text changes, the status does not).
- The ways back are an operator's: `failed` for `temporary_exhausted` (a provider outage
  outlasted every retry) is queued again when the same run is launched again (`RESUMABLE`);
  `unknown` is queued again only by an explicit resend (`ecrm campaign resend --unknown`,
  `RESENDABLE`), knowing that some of those recipients may get a second copy.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why a delivery is bounced, failed, unknown or skipped; the free-text `error` column
    keeps the provider's own words beside it."""

    HARD = "hard"  # bounced: the address does not exist, for good
    SOFT = "soft"  # bounced: a full mailbox, a server down; may still be delivered
    PERMANENT = "permanent"  # failed: the provider refused this message; retrying fails the same way
    TEMPORARY_EXHAUSTED = "temporary_exhausted"  # failed: an outage outlasted every retry
    TECHNICAL = "technical"  # failed: our side could not build the message (template, no address)
    INTERRUPTED = "interrupted"  # unknown: the worker died while the message was being handed over
    ADAPTER_ERROR = "adapter_error"  # unknown: the channel adapter raised something unexpected
    NO_CONSENT = "no_consent"  # skipped
    SUPPRESSED = "suppressed"  # skipped
    ERASED = "erased"  # skipped: the profile was erased after the send was planned


REASONS: dict[DeliveryStatus, frozenset[Reason]] = {
    DeliveryStatus.BOUNCED: frozenset({Reason.HARD, Reason.SOFT}),
    DeliveryStatus.FAILED: frozenset({Reason.PERMANENT, Reason.TEMPORARY_EXHAUSTED, Reason.TECHNICAL}),
    DeliveryStatus.UNKNOWN: frozenset({Reason.INTERRUPTED, Reason.ADAPTER_ERROR}),
    DeliveryStatus.SKIPPED: frozenset({Reason.NO_CONSENT, Reason.SUPPRESSED, Reason.ERASED}),
}

State = tuple[DeliveryStatus, Reason | None]
S = DeliveryStatus

# Where each status may go next; bounces are told apart by reason below.
_NEXT: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    S.QUEUED: frozenset({S.QUEUED, S.SENT, S.UNKNOWN, S.FAILED, S.SKIPPED}),
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.BOUNCED, S.FAILED}),
    S.SENT: frozenset({S.DELIVERED, S.BOUNCED, S.FAILED}),
    S.DELIVERED: frozenset({S.BOUNCED}),  # a hard bounce only: see may_move
    S.BOUNCED: frozenset({S.DELIVERED, S.BOUNCED, S.FAILED}),  # from a soft bounce only
    S.FAILED: frozenset(),
    S.SKIPPED: frozenset(),
}


def check(status: DeliveryStatus, reason: Reason | None) -> State:
    """The state, or ValueError if the reason does not belong to the status."""
    allowed = REASONS.get(status, frozenset())
    if (reason is None) != (not allowed) or (reason is not None and reason not in allowed):
        raise ValueError(f"a {status} delivery takes a reason out of {sorted(allowed) or 'none'}, not {reason}")
    return status, reason


def may_move(current: State, new: State) -> bool:
    """Whether a delivery in `current` takes `new`. The same state again is not a move (False),
    except the send path's `queued -> queued` retry."""
    (status, reason), (to, to_reason) = current, new
    if current == new:
        return status is S.QUEUED
    if to not in _NEXT[status]:
        return False
    if status is S.DELIVERED or (status is S.BOUNCED and to is S.BOUNCED):
        return to_reason is Reason.HARD and reason is not Reason.HARD
    if status is S.BOUNCED:
        return reason is Reason.SOFT
    return True


def predecessors(new: State) -> frozenset[State]:
    """Every state that may move to `new`: what a store's `WHERE status ...` admits."""
    return frozenset(state for state in ALL_STATES if may_move(state, new))


RESUMABLE: State = (S.FAILED, Reason.TEMPORARY_EXHAUSTED)  # an operator's resume queues it again
RESENDABLE: DeliveryStatus = S.UNKNOWN  # an operator's explicit resend queues it again, any reason


ALL_STATES: tuple[State, ...] = tuple(
    (status, reason) for status in DeliveryStatus
    for reason in (sorted(REASONS[status]) if status in REASONS else [None])
)


def sql_guard(new: State) -> str:
    """A SQL condition on a delivery row `d` that holds exactly when the row may take `new`;
    written out for both stores' statements."""
    states = sorted(predecessors(new), key=str)
    parts = []
    for status in sorted({s for s, _ in states}):
        reasons = sorted(str(r) for s, r in states if s is status and r is not None)
        everything = reasons == sorted(str(r) for r in REASONS.get(status, ()))
        if everything:
            parts.append(f"d.status = '{status}'")
        else:
            listed = ", ".join(f"'{r}'" for r in reasons)
            parts.append(f"(d.status = '{status}' AND d.reason IN ({listed}))")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"

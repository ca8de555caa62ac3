"""Twilio's message statuses (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values)
in the delivery state machine's words, for `POST /webhooks/twilio/status`.

Only statuses that say something the delivery does not already know become a receipt: the
in-between ones (accepted, scheduled, queued, sending) change nothing. `sent` still matters: it
settles a delivery left `unknown`. `undelivered` is the carrier's refusal: a hard bounce for a
number that does not exist or cannot take SMS, soft otherwise (a handset switched off may take
the next one). The `ErrorCode` Twilio sends with a failure is kept in the delivery's `error`.
"""

from __future__ import annotations

from ecrm.deliveries.receipts import Receipt
from ecrm.deliveries.states import DeliveryStatus, Reason, State

S = DeliveryStatus
STATES: dict[str, State] = {
    "sent": (S.SENT, None),
    "delivered": (S.DELIVERED, None),
    "read": (S.DELIVERED, None),  # WhatsApp and RCS: delivered, then read
    "undelivered": (S.BOUNCED, Reason.SOFT),
    "failed": (S.FAILED, Reason.PERMANENT),
    "canceled": (S.FAILED, Reason.PERMANENT),
}
IN_BETWEEN = frozenset({"accepted", "scheduled", "queued", "sending", "receiving", "received"})
HARD_BOUNCES = frozenset({
    "30005",  # unknown destination handset: the number does not exist
    "30006",  # landline or unreachable carrier: it will never take an SMS
})


def known_status(status: str) -> bool:
    return status in STATES or status in IN_BETWEEN


def receipt_for(delivery_id: int, message_sid: str, status: str, error_code: str | None) -> Receipt | None:
    """The receipt a status callback means, or None for a status that changes nothing."""
    state = STATES.get(status)
    if state is None:
        return None
    if state[0] is S.BOUNCED and error_code in HARD_BOUNCES:
        state = (S.BOUNCED, Reason.HARD)
    failed = state[0] in (S.BOUNCED, S.FAILED)
    detail = f"Twilio {status}" + (f", error {error_code}" if error_code else "") if failed else None
    return Receipt(delivery_id, state, detail, message_sid)

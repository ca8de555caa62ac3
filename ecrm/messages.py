"""The messages a composer builds (`ecrm.render`) and a channel adapter sends (`ecrm.channels`):
one type per channel kind, here so both stages import them and neither imports the other.
Built per message, so plain slotted dataclasses (frozen ones cost three times as much)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class OutgoingEmail:
    sender: str
    recipient: str
    data: bytes
    message_id: str
    eight_bit: bool = False  # a body is 8bit: declared as BODY=8BITMIME, converted for servers without it
    smtputf8: bool = False  # an address has a non-ASCII local part: only a server offering SMTPUTF8 takes it


@dataclass(slots=True)
class PushTarget:
    """One browser subscription of the recipient (`push_subscriptions`), keys as the browser gave them."""

    subscription_id: int
    endpoint: str
    p256dh: str
    auth: str


@dataclass(slots=True)
class OutgoingPush:
    """One notification to every subscription of one profile. `payload` is the JSON the service
    worker receives (encrypted per subscription by the adapter). The adapter lists in `gone` the
    subscriptions the push service said no longer exist (404/410), for the send to delete."""

    targets: list[PushTarget]
    payload: bytes
    ttl: int
    urgency: str
    topic: str | None = None
    gone: list[int] = field(default_factory=list)


@dataclass(slots=True)
class OutgoingSms:
    recipient: str  # E.164
    body: str
    parts: int  # the segments it goes out in (`channels.sms.parts`), stored on its delivery
    status_callback: str  # where the provider reports its fate; names the delivery

"""What a provider's refusal of a message says about its recipient, written back on the profile
once the chunk is recorded: an address that can never receive is marked (`phone_invalid` for
SMS), and a recipient who opted out at the provider has their consent on the channel withdrawn,
with the provider as its source. Both only ever happen for a few recipients of a chunk, so
they cost the send path nothing when no message was refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ecrm.channels.base import Outcome
from ecrm.errors import AddressRejectedError, RecipientOptedOutError
from ecrm.profiles.addresses import mark_phones_invalid
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime
from ecrm.types import ChannelKind, ConsentState

logger = logging.getLogger(__name__)
Refusal = AddressRejectedError | RecipientOptedOutError


def refusals(recipients: Sequence[Recipient], outcomes: Sequence[Outcome]) -> list[tuple[int, Refusal]]:
    return [(r.profile_id, o) for r, o in zip(recipients, outcomes, strict=True)
            if isinstance(o, AddressRejectedError | RecipientOptedOutError)]


async def apply_refusals(runtime: Runtime, channel: ChannelKind, refused: Sequence[tuple[int, Refusal]]) -> None:
    invalid = {p: e.reason for p, e in refused if isinstance(e, AddressRejectedError)}
    opted_out = [ConsentChange(p, channel, ConsentState.WITHDRAWN, e.source)
                 for p, e in refused if isinstance(e, RecipientOptedOutError)]
    now = runtime.clock.now()
    async with runtime.sessions.begin() as session:
        if invalid and channel is ChannelKind.SMS:
            await mark_phones_invalid(session, invalid, now)
        await set_consents(session, opted_out, now)
    logger.info("%s: %d address(es) marked invalid, %d opt-out(s) recorded from the provider", channel,
                len(invalid), len(opted_out))

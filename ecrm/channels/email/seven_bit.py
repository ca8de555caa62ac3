"""8bit emails for a server that does not take them (RFC 6152 3: the client converts the message
to 7bit or returns it): each 8bit part is re-encoded as base64.

The composer writes UTF-8 bodies as they are (`render.mime`), and nearly every server announces
8BITMIME; this is the slow path for the others, through the stdlib's parser and generator
(about a millisecond a message). Headers stay exactly as they were written.
"""

from __future__ import annotations

import email
import io
from dataclasses import replace
from email import encoders
from email.generator import BytesGenerator
from email.policy import compat32

from ecrm.channels.email.pipelining import Item, Take


def to_seven_bit(data: bytes) -> bytes:
    """The same email with each 8bit part re-encoded as base64 (see the module's doc)."""
    message = email.message_from_bytes(data)
    for part in message.walk():
        if not part.is_multipart() and str(part.get("Content-Transfer-Encoding", "")).lower() == "8bit":
            payload = part.get_payload(decode=True)
            del part["Content-Transfer-Encoding"]
            part.set_payload(payload)
            encoders.encode_base64(part)
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=compat32.clone(linesep="\r\n")).flatten(message)
    return out.getvalue()


def seven_bit_item(item: Item) -> Item:
    """`item`, converted if its email is 8bit."""
    index, message = item
    if not message.eight_bit:
        return item
    return index, replace(message, data=to_seven_bit(message.data), eight_bit=False)


def seven_bit_take(take: Take) -> Take:
    """`take`, handing out converted emails."""
    def take_seven_bit() -> Item | None:
        item = take()
        return seven_bit_item(item) if item is not None else None

    return take_seven_bit

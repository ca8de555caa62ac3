"""Addresses with a non-ASCII local part (RFC 6531): only a server that offers SMTPUTF8 takes
them, with `SMTPUTF8` on MAIL FROM. On a server that does not, such a message fails for good
with a reason saying so (the address has no ASCII form, RFC 6530 8); the others go on."""

from __future__ import annotations

from ecrm.channels.email.pipelining import Done, Item, Take
from ecrm.errors import PermanentSendError

SMTPUTF8 = "SMTPUTF8"  # the EHLO keyword and the MAIL FROM parameter


def not_offered(item: Item) -> PermanentSendError:
    message = item[1]
    return PermanentSendError(f"the address {message.recipient} (or the sender's) has a non-ASCII local part, which "
                              "needs SMTPUTF8, and the SMTP server does not offer it: use a server or relay that "
                              "offers SMTPUTF8, or an ASCII address for this recipient")


def ascii_only(first: Item, take: Take, done: Done) -> tuple[Item | None, Take]:
    """`first` and `take` for a server without SMTPUTF8: messages that need it are reported
    failed to `done` and skipped."""
    def admit(item: Item | None) -> Item | None:
        while item is not None and item[1].smtputf8:
            done(item, not_offered(item))
            item = take()
        return item

    return admit(first), lambda: admit(take())

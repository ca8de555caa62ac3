"""Addresses as they go on the wire: in the envelope and in `To:`/`From:`.

An internationalised domain goes out as IDNA A-labels (`bücher.example` -> `xn--bcher-kva.example`,
IDNA 2008 with UTS #46 mapping), which every server takes. A non-ASCII local part has no ASCII
form: it goes out as UTF-8 and needs a server that offers SMTPUTF8 (RFC 6531, 6532); the SMTP
channel fails such a message permanently on a server that does not. An address is never an
RFC 2047 encoded word: a mail server does not decode those.
"""

from __future__ import annotations

from functools import lru_cache

import idna


class AddressError(ValueError):
    """An address that cannot be written on the wire; the send records a technical failure."""


def wire_address(address: str) -> tuple[str, bool]:
    """(`address` as it goes on the wire, whether it needs SMTPUTF8)."""
    if address.isascii():
        if not address.isprintable() or " " in address or "@" not in address:
            raise AddressError(f"{address!r} is not an email address")
        return address, False
    local, at, domain = address.rpartition("@")
    if not at or not local or not address.isprintable() or " " in address:
        raise AddressError(f"{address!r} is not an email address")
    ascii_domain = idna_domain(domain)
    return f"{local}@{ascii_domain}", not local.isascii()


@lru_cache(maxsize=4096)
def idna_domain(domain: str) -> str:
    """The domain's A-label form; raise AddressError if it is not a valid IDNA domain."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"the domain {domain!r} is not a valid internationalised domain: {exc}") from exc

"""The headers mailbox providers want on bulk mail, built once per send.

- `List-Id` (RFC 2919): `"Campaign name" <campaign-slug.list-id-domain>`, one list per campaign.
- `Feedback-ID` (Gmail's feedback loop): `campaign:run:kind:sender-id`, identifiers of groups
  of mail, never of a recipient; the sender id is the same on every email.
- `Precedence: bulk`: what auto-responders read to stay quiet.

`List-Unsubscribe`, which differs per recipient, is folded by `mime.list_unsubscribe`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from ecrm.render.mime import phrase_address

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(name: str, limit: int = 60) -> str:
    """`name` as lowercase ASCII letters, digits and hyphens (`Welcome Series!` -> `welcome-series`);
    a name with no such character (Persian, Thai) becomes `list-` and a short hash of it."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    cut = _NOT_SLUG.sub("-", ascii_name).strip("-")[:limit].strip("-")
    return cut or "list-" + hashlib.blake2b(name.encode(), digest_size=5).hexdigest()


def list_id(name: str, domain: str) -> bytes:
    """The `List-Id` line of campaign `name` (RFC 2919: a phrase, then `<slug.domain>`)."""
    return phrase_address("List-Id", name, f"{slug(name)}.{domain}")


def feedback_id(campaign: str, run: str, kind: str, sender_id: str) -> bytes:
    """The `Feedback-ID` line: each identifier without colons, the sender id last."""
    fields = (slug(campaign, 30), _NOT_SLUG.sub("-", run.lower()), _NOT_SLUG.sub("-", kind.lower()), sender_id)
    return f"Feedback-ID: {':'.join(fields)}\r\n".encode()


PRECEDENCE = b"Precedence: bulk\r\n"

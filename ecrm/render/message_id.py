"""Message-IDs that name their delivery: `<{delivery_id}.{tag}@{domain}>`.

The tag is a keyed BLAKE2b of the delivery's idempotency key, so an ID cannot be forged and a
retried send carries the same ID. Feedback (bounces, replies, mailbox receipts) reads the
delivery back from the ID without an index on it.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_ID = re.compile(r"^<(\d+)\.([0-9a-f]{16})@([^>]+)>$")


class MessageIds:
    def __init__(self, secret: str, domain: str) -> None:
        self.domain = domain
        key = hashlib.blake2b(secret.encode(), digest_size=32, person=b"ecrm-msgid").digest()
        self._keyed = hashlib.blake2b(key=key, digest_size=8)

    def _tag(self, delivery_id: int) -> str:
        """Copying the keyed state skips hashing the key block again for every ID."""
        mac = self._keyed.copy()
        mac.update(b"%d" % delivery_id)
        return mac.hexdigest()

    def make(self, delivery_id: int) -> str:
        return f"<{delivery_id}.{self._tag(delivery_id)}@{self.domain}>"

    def delivery_of(self, message_id: str) -> int | None:
        """The delivery a Message-ID of ours names, or None for anything else."""
        match = _ID.match(message_id.strip())
        if match is None or not hmac.compare_digest(match.group(2), self._tag(int(match.group(1)))):
            return None
        return int(match.group(1))

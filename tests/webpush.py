"""What web push tests share: the local push service running in the test's loop, and settings
with web push set up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from ecrm.peers.push_service import PushService
from ecrm.push import vapid
from ecrm.settings import Settings

SUBJECT = "mailto:o@shop.example"


@pytest.fixture
async def service() -> AsyncIterator[PushService]:
    """The local push service on a free port: it checks each VAPID token and decrypts each body."""
    peer = PushService()
    await peer.start()
    yield peer
    await peer.close()


def with_push(settings: Settings, keys: vapid.VapidKeys | None = None, **push: object) -> Settings:
    """`settings` with web push set up: `keys` (a new pair unless given), a subject, and any other
    `push` fields."""
    keys = keys or vapid.new_key_pair()
    fields = {"vapid_public_key": keys.public_key, "vapid_private_key": SecretStr(keys.private_key),
              "subject": SUBJECT, **push}
    return settings.model_copy(update={"push": settings.push.model_copy(update=fields)})

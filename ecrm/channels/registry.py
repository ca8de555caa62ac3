"""Which adapter serves which channel: one line per provider.

Adding a provider is one module plus one line in `PROVIDERS`; `DEFAULT_PROVIDER` says which
one a channel uses when a campaign does not name one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecrm.channels.base import Channel
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.settings import Settings
from ecrm.types import ChannelKind

PROVIDERS: dict[str, Callable[[Settings], Channel[Any]]] = {
    "smtp": SmtpEmail.from_settings,
}

DEFAULT_PROVIDER: dict[ChannelKind, str] = {
    ChannelKind.EMAIL: "smtp",
}


class Channels:
    """The live adapters of one process, opened on first use and closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._live: dict[str, Channel[Any]] = {}

    def for_kind(self, kind: ChannelKind) -> Channel[Any]:
        provider = DEFAULT_PROVIDER[kind]
        channel = self._live.get(provider)
        if channel is None:
            channel = self._live[provider] = PROVIDERS[provider](self.settings)
        return channel

    async def close(self) -> None:
        live, self._live = list(self._live.values()), {}
        for channel in live:
            await channel.close()

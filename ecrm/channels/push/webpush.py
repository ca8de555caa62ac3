"""Web push over HTTP (RFC 8030) with aiohttp: each subscription gets its own encrypted body
(`ecrm.push.encryption`, RFC 8291) and a VAPID header cached per push-service origin
(`ecrm.push.vapid_jwt`, RFC 8292), with the message's `TTL`, `Urgency` and `Topic`.

Answers, per subscription:

| push service says        | means                                                           |
|--------------------------|-----------------------------------------------------------------|
| 201 (any 2xx)            | accepted                                                        |
| 404, 410                 | the subscription is gone: listed in `message.gone` to delete    |
| 429                      | transient, after its `Retry-After`                              |
| 5xx, timeout, no answer  | transient: retried, never dropped                               |
| 400, 401, 403, 413, ...  | permanent (a payload or VAPID key the service refuses)          |

A profile with several subscriptions (browsers, devices) gets one delivery: it is `sent` when
any subscription accepted the notification (the others' failures are logged, not retried, so a
retry never repeats it on the devices that have it); retried when none accepted and one failed
transiently; failed when every subscription refused it or is gone.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp

from ecrm.channels.base import SendResult
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.errors import ConfigError, PermanentSendError, SendError, TransientSendError
from ecrm.messages import OutgoingPush, PushTarget
from ecrm.push.encryption import encrypt
from ecrm.push.vapid_jwt import VapidTokens
from ecrm.settings import Settings
from ecrm.types import ChannelKind

logger = logging.getLogger(__name__)
GONE = frozenset({404, 410})
MAX_ID = 250  # deliveries.provider_message_id


class SubscriptionGone(PermanentSendError):
    """The push service no longer knows this subscription (the browser unsubscribed or expired)."""


class WebPush:
    kind: ClassVar[ChannelKind] = ChannelKind.PUSH
    provider: ClassVar[str] = "webpush"

    def __init__(self, tokens: VapidTokens, connections: int = 32, timeout: float = 10.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.tokens, self.max_concurrency, self.clock = tokens, connections, clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebPush:
        push = settings.push
        if not (push.vapid_public_key and push.vapid_private_key and push.subject):
            raise ConfigError("push", "settings", "web push needs vapid_public_key, vapid_private_key (environment) "
                              "and subject; run `ecrm push keys`")
        tokens = VapidTokens(push.vapid_private_key.get_secret_value(), push.vapid_public_key, push.subject)
        return cls(tokens, push.connections, push.timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def send(self, message: OutgoingPush) -> SendResult:
        targets = message.targets
        outcomes: list[SendResult | SendError]
        if len(targets) == 1:  # most profiles: awaited in place, without a task to gather
            outcome = await self.post(message, targets[0])
            if isinstance(outcome, SendResult):
                return outcome
            outcomes = [outcome]
        else:
            outcomes = list(await asyncio.gather(*(self.post(message, target) for target in targets)))
        message.gone = [t.subscription_id for t, o in zip(message.targets, outcomes, strict=True)
                        if isinstance(o, SubscriptionGone)]
        return settle(outcomes)

    async def post(self, message: OutgoingPush, target: PushTarget) -> SendResult | SendError:
        try:
            body = encrypt(message.payload, target.p256dh, target.auth)
        except ValueError as exc:
            return PermanentSendError(f"cannot encrypt for this subscription: {exc}")
        site = origin(target)
        headers = {"TTL": str(message.ttl), "Urgency": message.urgency, "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "Authorization": self.tokens.header(site)}
        if message.topic:
            headers["Topic"] = message.topic
        try:
            async with self.session.post(target.endpoint, data=body, headers=headers) as response:
                if 200 <= response.status < 300:  # the message's URL at the push service (RFC 8030 section 5)
                    return SendResult(WebPush.provider, response.headers.get("Location", "")[:MAX_ID])
                return await refusal(response, self.clock.now())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return TransientSendError(f"push service {site}: {type(exc).__name__} {exc}".strip())

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def origin(target: PushTarget) -> str:
    """The endpoint's `scheme://host[:port]`, the VAPID token's audience. Endpoints are one per
    subscription, so `urlsplit` (several µs) runs once per push service: on the endpoint's part
    up to the first `/` after `//`, which holds its whole scheme and host whatever comes later
    (stored endpoints have no whitespace or control characters, which `urlsplit` would drop)."""
    endpoint = target.endpoint
    end = endpoint.find("/", endpoint.find("//") + 2)
    return _origin_of(endpoint if end < 0 else endpoint[:end])


@lru_cache(maxsize=256)
def _origin_of(head: str) -> str:
    parts = urlsplit(head)
    return f"{parts.scheme}://{parts.netloc}"


async def refusal(response: aiohttp.ClientResponse, now: datetime) -> SendError:
    """What a push service's answer other than 2xx means (see the module's doc)."""
    status = response.status
    text = (await response.text(errors="replace"))[:200].strip()
    reason = f"push service answered {status} {response.reason or ''}: {text}".rstrip(": ")
    if status in GONE:
        return SubscriptionGone(reason)
    if status == 429:
        return TransientSendError(reason, retry_after(response.headers.get("Retry-After"), now))
    if status >= 500:
        return TransientSendError(reason)
    return PermanentSendError(reason)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None


def settle(outcomes: list[SendResult | SendError]) -> SendResult:
    """One outcome for the delivery (see the module's doc); raises when none accepted."""
    accepted = [o for o in outcomes if isinstance(o, SendResult)]
    failures = [o for o in outcomes if isinstance(o, SendError)]
    if accepted:
        if failures:
            logger.info("push accepted by %d subscription(s), refused by %d: %s", len(accepted), len(failures),
                        failures[0].reason)
        return accepted[0]
    transient = [o for o in failures if isinstance(o, TransientSendError)]
    if transient:
        waits = [o.retry_after for o in transient if o.retry_after is not None]
        raise TransientSendError(transient[0].reason, max(waits, default=None))
    if failures and all(isinstance(o, SubscriptionGone) for o in failures):
        raise SubscriptionGone(f"every push subscription of this profile is gone ({failures[0].reason}); "
                               "deleted")
    raise PermanentSendError(failures[0].reason if failures else "the profile has no push subscription")

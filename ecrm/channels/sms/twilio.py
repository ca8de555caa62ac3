"""SMS through Twilio's Messages API (REST API 2010-04-01,
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource), posted as
its own wire format with aiohttp: one form-encoded POST per message to
`/2010-04-01/Accounts/{AccountSid}/Messages.json`, Basic auth with the account SID and auth
token, answered 201 with the message's JSON (its `sid`) or an error JSON
(`{"code", "message", "more_info", "status"}`).

Why not the `twilio` library's async client: it costs twice the client CPU per message. To the
same local peer with 32 requests in flight, this adapter took 0.11-0.13 ms of CPU per message
against 0.24-0.27 ms for `messages.create_async` (`python -m bench.twilio_client`; the perf
notes' 4,463 against 3,561 req/s say the same), and on two cores the sender's CPU is what bounds
the SMS rate. The library is kept for checking webhook signatures (`api.twilio_webhooks`).

The body is encoded by hand from a prefix built once (sender and nothing else varies per
send), and one aiohttp session with `connections` sockets carries every request; `send_many`
keeps that many in flight. Errors are translated in `_outcome`, from the table below.
"""

from __future__ import annotations

import asyncio
import base64
from typing import ClassVar
from urllib.parse import quote

import aiohttp
import orjson

from ecrm.channels.base import SendResult
from ecrm.errors import (
    AddressRejectedError,
    ConfigError,
    PermanentSendError,
    RecipientOptedOutError,
    SendError,
    TransientSendError,
    UncertainSendError,
)
from ecrm.messages import OutgoingSms
from ecrm.settings import Settings, TwilioSettings
from ecrm.types import ChannelKind

# Twilio error codes (https://www.twilio.com/docs/api/errors) with a meaning of their own here.
INVALID_NUMBER = {
    21211: "the 'To' number is not a valid phone number",
    21614: "the 'To' number is not a mobile number",  # a landline: it will never take an SMS
}
OPTED_OUT = 21610  # the recipient replied STOP to this sender: Twilio refuses until they send START
TOO_MANY_REQUESTS = 20429  # the account's API concurrency limit; the HTTP status is 429 as well
OPT_OUT_SOURCE = f"twilio:{OPTED_OUT}"
API_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


class TwilioSms:
    kind: ClassVar[ChannelKind] = ChannelKind.SMS
    provider: ClassVar[str] = "twilio"

    def __init__(self, settings: TwilioSettings, auth_token: str) -> None:
        self.url = settings.api_url.rstrip("/") + API_PATH.format(sid=settings.account_sid)
        credentials = base64.b64encode(f"{settings.account_sid}:{auth_token}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}", "Accept": "application/json",
                        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        self.sender = (f"From={quote(settings.from_number, safe='')}" if settings.from_number
                       else f"MessagingServiceSid={settings.messaging_service_sid}")
        self.max_concurrency = settings.connections
        self.timeout = aiohttp.ClientTimeout(total=settings.timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSms:
        twilio = settings.twilio
        token = twilio.auth_token.get_secret_value() if twilio.auth_token else ""
        if not token:
            raise ConfigError("twilio.auth_token", "environment", "not set: put the account's auth token in "
                              "ECRM_TWILIO__AUTH_TOKEN (or .env) to send SMS")
        if not (twilio.from_number or twilio.messaging_service_sid):
            raise ConfigError("twilio.from_number", "config", "SMS needs a sender: set twilio.from_number "
                              "(E.164, e.g. +15005550006) or twilio.messaging_service_sid (MG...)")
        return cls(twilio, token)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                                  json_serialize=lambda value: orjson.dumps(value).decode())
        return self._session

    def form(self, message: OutgoingSms) -> bytes:
        return (f"To={quote(message.recipient, safe='')}&{self.sender}&Body={quote(message.body, safe='')}"
                f"&StatusCallback={quote(message.status_callback, safe='')}").encode("ascii")

    async def send(self, message: OutgoingSms) -> SendResult:
        try:
            async with self.session().post(self.url, data=self.form(message), headers=self.headers) as response:
                payload = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise TransientSendError(f"Twilio did not answer within {self.timeout.total:g} s") from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError(f"could not reach Twilio at {self.url}: {exc}") from exc
        return _outcome(status, payload, retry_after, message.parts)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its sockets


def _outcome(status: int, payload: bytes, retry_after: str | None, parts: int) -> SendResult:
    """The SendResult of a 2xx answer, or the SendError Twilio's answer means."""
    try:
        body = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if 200 <= status < 300 and isinstance(body.get("sid"), str):
        return SendResult("twilio", body["sid"], _segments(body.get("num_segments"), parts))
    raise _error(status, body, retry_after)


def _error(status: int, body: dict[str, object], retry_after: str | None) -> SendError:
    code = body.get("code") if isinstance(body.get("code"), int) else None
    said = f"Twilio {code or status}: {body.get('message') or 'no message'}"
    if code in INVALID_NUMBER:
        return AddressRejectedError(f"{said} ({INVALID_NUMBER[code]})")
    if code == OPTED_OUT:
        return RecipientOptedOutError(f"{said} (the recipient replied STOP)", OPT_OUT_SOURCE)
    if status == 429 or code == TOO_MANY_REQUESTS or status >= 500 or status in (401, 403):
        # 401/403: credentials or account trouble, which fixing the settings cures; never the message's fault
        return TransientSendError(said, _seconds(retry_after))
    if 200 <= status < 300:  # Twilio took it, but we cannot tell which message it is: never resend it
        return UncertainSendError(f"Twilio answered {status} without a message sid")
    return PermanentSendError(said)


def _seconds(retry_after: str | None) -> float | None:
    try:
        seconds = float(retry_after) if retry_after else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86_400 else None


def _segments(value: object, counted: int) -> int:
    """Twilio's own `num_segments` (a string in its JSON), else the count made at composing."""
    try:
        return int(str(value)) if value is not None else counted
    except ValueError:
        return counted

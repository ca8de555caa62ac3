"""A local stand-in for Twilio's Messages API (REST 2010-04-01), for tests and benchmarks.

Peers stage: it speaks the wire format `channels.sms.twilio` posts. `POST
/2010-04-01/Accounts/{AccountSid}/Messages.json` takes form parameters (`To`, `From` or
`MessagingServiceSid`, `Body`, `StatusCallback`), checks Basic auth against the account SID and
auth token it was given, and answers as Twilio does: 201 with the message resource's JSON (a new
`SM...` sid, `num_segments` counted as Twilio counts, `status` queued, or accepted through a
Messaging Service), or an error JSON `{"code", "message", "more_info", "status"}` with Twilio's
codes: 20003 (auth), 21602/21603/21604 (missing parameters), and any code chosen per `To`
number (`errors`) or for the next N requests (`fail_next`).

With `callbacks` on, each accepted message is followed by its status callbacks (`sent`, then
`delivered`) posted to its `StatusCallback`, signed as Twilio signs them (`twilio_signature`).

Run standalone with ``python -m ecrm.peers.twilio_sink --port 0 --stats-file F``: it prints
``ecrm-twilio-sink listening on HOST:PORT`` once bound and writes JSON stats (`stats()` and
`per_recipient`) to ``F`` on SIGUSR1 and on exit (SIGTERM/SIGINT); SIGUSR2 resets the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from ecrm.channels.sms.parts import count
from ecrm.peers.serving import serve_until_stopped

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "sink-auth-token"
MESSAGES = "/2010-04-01/Accounts/{sid}/Messages.json"

# Twilio's own status and message for each code the sink can answer with.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "Invalid 'To' Phone Number"),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
}


def error_json(code: int) -> web.Response:
    status, message = ERRORS[code]
    payload = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
               "status": status}
    headers = {"Retry-After": "1"} if status == 429 else None
    return web.json_response(payload, status=status, headers=headers)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """`X-Twilio-Signature` of a POST to `url` with `params`, computed as Twilio does."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


@dataclass
class TwilioSink:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    errors: dict[str, int] = field(default_factory=dict)  # To -> the error code to answer with
    fail_next: int = 0  # answer this many requests with `fail_code` first
    fail_code: int = 20429
    keep: bool = True  # keep every request's parameters (tests); off: counts only (benchmarks)
    callbacks: bool = False  # post `sent` and `delivered` to each message's StatusCallback
    received: list[dict[str, str]] = field(default_factory=list)
    per_recipient: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    refused: int = 0
    _numbers: int = 0
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(expected).decode()
        self._path = MESSAGES.format(sid=self.account_sid)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post(MESSAGES.format(sid="{sid}"), self.create_message)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, backlog=1024).start()
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        self.received.clear()
        self.per_recipient.clear()
        self.accepted = self.refused = 0

    def stats(self) -> dict[str, int]:
        return {"accepted": self.accepted, "refused": self.refused, "recipients": len(self.per_recipient),
                "duplicates": sum(n - 1 for n in self.per_recipient.values() if n > 1)}

    def tally(self) -> dict[str, Any]:
        return {**self.stats(), "per_recipient": dict(self.per_recipient)}

    async def create_message(self, request: web.Request) -> web.Response:
        if request.path != self._path or not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), self._authorization.encode()):
            return error_json(20003)
        try:
            params = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True,
                                    strict_parsing=True, errors="strict"))
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"code": 20001, "message": "Invalid form body", "status": 400}, status=400)
        refusal = self._refusal(params)
        if refusal is not None:
            self.refused += 1
            return error_json(refusal)
        return web.json_response(self._accept(params), status=201)

    def _refusal(self, params: dict[str, str]) -> int | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_code
        if not params.get("To"):
            return 21604
        if not (params.get("From") or params.get("MessagingServiceSid")):
            return 21603
        if not params.get("Body"):
            return 21602
        return self.errors.get(params["To"])

    def _accept(self, params: dict[str, str]) -> dict[str, object]:
        self._numbers += 1
        sid = f"SM{os.getpid():08x}{self._numbers:024x}"
        self.accepted += 1
        self.per_recipient[params["To"]] += 1
        if self.keep:
            self.received.append({**params, "Sid": sid})
        if self.callbacks and params.get("StatusCallback"):
            task = asyncio.ensure_future(self._report(params, sid))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        now = formatdate(usegmt=True)
        service = params.get("MessagingServiceSid")
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": params["Body"],
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": params.get("From"),
            "messaging_service_sid": service, "num_media": "0", "num_segments": str(count(params["Body"]).parts),
            "price": None, "price_unit": "USD", "sid": sid, "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{self._path[:-5]}/{sid}/Media.json"}, "to": params["To"],
            "uri": f"{self._path[:-5]}/{sid}.json",
        }

    async def _report(self, params: dict[str, str], sid: str) -> None:
        """Twilio's status callbacks for an accepted message: `sent`, then `delivered`."""
        self._client = self._client or aiohttp.ClientSession()
        url = params["StatusCallback"]
        for status in ("sent", "delivered"):
            form = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "From": params.get("From", ""),
                    "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
                    "To": params["To"]}
            headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url, form)}
            async with self._client.post(url, data=form, headers=headers) as response:
                await response.read()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecrm.peers.twilio_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=ACCOUNT_SID)
    parser.add_argument("--auth-token", default=AUTH_TOKEN)
    parser.add_argument("--stats-file", type=Path)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    sink = TwilioSink(args.account_sid, args.auth_token, keep=False)
    port = await sink.start(args.host, args.port)
    await serve_until_stopped(sink, "ecrm-twilio-sink", args.host, port, args.stats_file, sink.reset)


def main(argv: list[str] | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(serve(_parse_args(argv)))
    else:
        uvloop.run(serve(_parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])

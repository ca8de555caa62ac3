"""Client CPU per SMS: ecrm's `TwilioSms` (a hand-encoded form posted with aiohttp) against the
`twilio` library's own async client (`messages.create_async` on `AsyncTwilioHttpClient`), both
to the local Twilio peer in another process, with the same number of requests in flight. The
figure that decided how `channels/sms/twilio.py` posts (issue 19).

    python -m bench.twilio_client [-n 5000] [--concurrency 32]

Prints msg/s and this process's CPU ms per message for each client, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.peers import TwilioSinkProcess
from bench.send_sms import FROM, twilio_fields
from ecrm import loop
from ecrm.channels.sms.twilio import TwilioSms
from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN
from ecrm.settings import TwilioSettings

BODY = "Example Shop: welcome, Emma! 1,234 welcome points are waiting for you. Reply STOP to opt out."
CALLBACK = "https://crm.shop.example/webhooks/twilio/status?d="


async def pump(send: Callable[[int], Awaitable[object]], n: int, concurrency: int) -> tuple[float, float]:
    numbers = iter(range(n))

    async def lane() -> None:
        for i in numbers:
            await send(i)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / n


async def ecrm_adapter(port: int, n: int, concurrency: int) -> tuple[float, float]:
    from ecrm.messages import OutgoingSms

    channel = TwilioSms(TwilioSettings.model_validate(twilio_fields(port, concurrency)), AUTH_TOKEN)
    try:
        return await pump(lambda i: channel.send(OutgoingSms(f"+1{2_000_000_000 + i}", BODY, 1, f"{CALLBACK}{i}")),
                          n, concurrency)
    finally:
        await channel.close()


async def twilio_library(port: int, n: int, concurrency: int) -> tuple[float, float]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
    client.api.base_url = f"http://127.0.0.1:{port}"
    try:
        return await pump(lambda i: client.messages.create_async(to=f"+1{2_000_000_000 + i}", from_=FROM, body=BODY,
                                                                 status_callback=f"{CALLBACK}{i}"), n, concurrency)
    finally:
        await http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.twilio_client", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, client in (("ecrm TwilioSms (aiohttp form post)", ecrm_adapter),
                             ("twilio library create_async", twilio_library)):
            sink = TwilioSinkProcess(Path(tmp) / "peer.json")
            try:
                loop.run(client(sink.port, min(500, args.n), args.concurrency))  # warm up
                figures[name] = loop.run(client(sink.port, args.n, args.concurrency))
            finally:
                sink.stop()
            rate, cpu = figures[name]
            print(f"{name}: {args.n} messages, {rate:,.0f} msg/s, client CPU {cpu:.3f} ms/msg", flush=True)
    (ours, our_cpu), (theirs, their_cpu) = figures.values()
    print(f"ecrm's adapter: {ours / theirs:.2f}x the library's rate, {our_cpu / their_cpu:.0%} of its CPU per message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A local web push service (RFC 8030 push endpoints) for tests and benchmarks.

Peers stage: it stands in for a browser vendor's push service. `subscribe()` makes what a
browser would (a P-256 key pair, a 16-byte auth secret, an endpoint `/push/{n}` on this server)
and keeps the private half. Each POST to an endpoint has its `Authorization: vapid t=..., k=...`
checked (ES256 signature with the k= key, `aud` this server's origin, `exp` ahead, `sub` there;
401/403 otherwise), needs `TTL` and `Content-Encoding: aes128gcm`, and its body is decrypted with
the subscription's private key by `http_ece`, a library independent of the sender's code; the
plaintext is kept in `received`. Unknown endpoints get 404. `script[n]` makes chosen endpoints
answer chosen statuses (404, 410, 429 with `Retry-After`, 500...), one per request.

`decrypt=False` (benchmarks) only counts bodies per endpoint; each distinct VAPID token is
verified once either way, as a real service would cache it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from ecrm.peers.serving import serve_until_stopped
from ecrm.push import vapid
from ecrm.push.vapid_jwt import verify


@dataclass(frozen=True)
class BrowserSubscription:
    """What a browser keeps for one subscription, and its `PushSubscription.toJSON()`."""

    number: int
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        return vapid.encode_public(self.private_key.public_key())

    def to_json(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": vapid.b64url_encode(self.auth)}}


@dataclass(frozen=True)
class Received:
    number: int
    plaintext: bytes | None  # None when not decrypting
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        assert self.plaintext is not None
        return dict(json.loads(self.plaintext))


@dataclass
class PushService:
    decrypt: bool = True
    accept_any: bool = False  # benchmarks: any /push/{n} is a live subscription (nothing to decrypt with)
    subscriptions: dict[int, BrowserSubscription] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    per_endpoint: Counter[int] = field(default_factory=Counter)
    script: dict[int, list[int]] = field(default_factory=dict)
    retry_after: str = "7"
    refused: list[str] = field(default_factory=list)  # why requests were refused (401/403/400)
    origin: str = ""
    _verified: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    def subscribe(self) -> BrowserSubscription:
        number = len(self.subscriptions) + 1
        sub = BrowserSubscription(number, f"{self.origin}/push/{number}", ec.generate_private_key(vapid.CURVE),
                                  os.urandom(16))
        self.subscriptions[number] = sub
        return sub

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application(client_max_size=8192)
        app.router.add_post("/push/{number}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.origin = f"http://{host}:{bound}"
        return int(bound)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"]) if request.match_info["number"].isdigit() else -1
        scripted = self.script.get(number)
        if scripted:
            return self._scripted(scripted.pop(0))
        if number not in self.subscriptions and not self.accept_any:
            return web.Response(status=404, text="no such subscription")
        problem = self._check(request)
        if problem is not None:
            self.refused.append(problem[1])
            return web.Response(status=problem[0], text=problem[1])
        body = await request.read()
        plaintext = self._open(number, body) if self.decrypt else None
        if self.decrypt and plaintext is None:
            self.refused.append("the body does not decrypt with the subscription's keys")
            return web.Response(status=400, text="cannot decrypt")
        self.per_endpoint[number] += 1
        if self.decrypt:  # a benchmark's service only counts
            self.received.append(Received(number, plaintext, dict(request.headers)))
        return web.Response(status=201, headers={"Location": f"{self.origin}/messages/{len(self.received)}"})

    def _scripted(self, status: int) -> web.Response:
        headers = {"Retry-After": self.retry_after} if status == 429 else {}
        return web.Response(status=status, headers=headers, text=f"scripted {status}")

    def _check(self, request: web.Request) -> tuple[int, str] | None:
        authorization = request.headers.get("Authorization", "")
        if authorization not in self._verified:
            try:
                verify(authorization, self.origin, time.time())
            except ValueError as exc:
                return (401 if not authorization else 403), f"VAPID: {exc}"
            self._verified.add(authorization)
        if not request.headers.get("TTL", "").isdigit():
            return 400, "TTL header missing"
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return 415, "Content-Encoding must be aes128gcm"
        if request.content_length is not None and request.content_length > 4096:
            return 413, "payload too large"
        return None

    def _open(self, number: int, body: bytes) -> bytes | None:
        sub = self.subscriptions.get(number)
        if sub is None:
            return None
        try:
            return bytes(http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"))
        except Exception:  # http_ece raises several kinds for a body that does not open
            return None

    def stats(self) -> dict[str, object]:
        counts = self.per_endpoint
        return {"messages": sum(counts.values()), "endpoints": len(counts),
                "duplicated": sum(n - 1 for n in counts.values() if n > 1), "refused": len(self.refused)}

    def tally(self) -> dict[str, Any]:
        return {**self.stats(), "per_endpoint": {str(k): v for k, v in self.per_endpoint.items()}}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecrm.peers.push_service", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--stats-file", type=Path,
                        help="JSON stats (with per-endpoint counts) written on SIGUSR1 and on exit")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Benchmark mode: every /push/{n} is live, bodies are counted, not decrypted."""
    service = PushService(decrypt=False, accept_any=True)
    port = await service.start(args.host, args.port)
    await serve_until_stopped(service, "ecrm-push-service", args.host, port, args.stats_file)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_parse_args(argv)))


if __name__ == "__main__":
    main()

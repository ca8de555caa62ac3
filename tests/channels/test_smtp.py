"""The SMTP adapter against a real aiosmtpd server: login, refusals, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ecrm.channels.base import send_many
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.errors import PermanentSendError, TransientSendError
from ecrm.messages import OutgoingEmail
from ecrm.settings import SmtpSettings
from tests.smtp import CapturingHandler, free_port

# The test server takes logins over plain TCP on loopback; aiosmtpd rightly warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

MESSAGE = b"From: shop@example.com\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nHello\r\n.dotted line\r\n"


def email(to: str) -> OutgoingEmail:
    return OutgoingEmail("shop@example.com", to, MESSAGE.replace(b"{to}", to.encode()), "<1@x>")


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"shop", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def auth_server() -> Iterator[tuple[CapturingHandler, int]]:
    handler, port = CapturingHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield handler, port
    controller.stop()


async def test_it_logs_in_and_keeps_dot_lines_intact(auth_server: tuple[CapturingHandler, int]) -> None:
    handler, port = auth_server
    channel = SmtpEmail(SmtpSettings(port=port, username="shop", password="s3cret", connections=2))
    try:
        outcomes = await send_many(channel, [email(f"u{i}@example.com") for i in range(5)])
    finally:
        await channel.close()
    assert [o.provider_message_id for o in outcomes if not isinstance(o, Exception) and o] == ["<1@x>"] * 5
    assert sorted(handler.per_recipient()) == [f"u{i}@example.com" for i in range(5)]
    assert b"\r\n.dotted line\r\n" in handler.received[0][1]


async def test_a_refused_login_is_transient_so_nothing_is_failed_for_a_settings_mistake(
    auth_server: tuple[CapturingHandler, int]
) -> None:
    _, port = auth_server
    channel = SmtpEmail(SmtpSettings(port=port, username="shop", password="wrong", timeout=1, connections=4))
    try:
        outcomes = await send_many(channel, [email(f"u{i}@example.com") for i in range(40)])
    finally:
        await channel.close()
    assert all(isinstance(o, TransientSendError) and "cannot open an SMTP session" in o.reason for o in outcomes)


async def test_no_server_is_transient_and_a_refused_recipient_is_permanent() -> None:
    channel = SmtpEmail(SmtpSettings(port=free_port()))
    with pytest.raises(TransientSendError):
        await channel.send(email("u@example.com"))
    handler, port = CapturingHandler(refuse={"gone@example.com"}), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    channel = SmtpEmail(SmtpSettings(port=port))
    try:
        outcomes = await send_many(channel, [email("gone@example.com"), email("here@example.com")])
    finally:
        await channel.close()
        controller.stop()
    assert isinstance(outcomes[0], PermanentSendError) and "550" in outcomes[0].reason
    assert not isinstance(outcomes[1], Exception)
    assert handler.per_recipient() == {"here@example.com": 1}


async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    """The server's idle timeout (aiosmtpd's `timeout`) closes the pooled connection; the next
    message opens a new one instead of failing transiently (which would wait for a retry)."""
    handler, port = CapturingHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=0.2)
    controller.start()
    channel = SmtpEmail(SmtpSettings(port=port, connections=1))
    try:
        await channel.send(email("first@example.com"))
        await asyncio.sleep(0.6)  # the server has closed the idle connection
        result = await channel.send(email("second@example.com"))
    finally:
        await channel.close()
        controller.stop()
    assert result.provider_message_id == "<1@x>"
    assert sorted(handler.per_recipient()) == ["first@example.com", "second@example.com"]

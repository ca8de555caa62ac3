"""Wire-ready email bytes from a pre-encoded skeleton.

Building each email with `email.message` costs 1-2 ms; here the headers that never change
(From, MIME-Version, the multipart boundary and part headers) are encoded once per template
and locale, and each recipient only costs the per-recipient headers (stdlib `email.header`
for non-ASCII) and one quoted-printable or base64 pass per body part (stdlib `binascii`).
The result parses cleanly with the stdlib parser; tests check that in English, Persian, Thai.
"""

from __future__ import annotations

import binascii
import re
import secrets
import struct
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate
from functools import lru_cache

_MAX_PLAIN_HEADER = 76
# Up to 39 bytes (52 base64 chars: one encoded word per folded line stays under 78) that do not
# end inside a UTF-8 character (RFC 2047 5.3): backtracks while the next byte continues one.
_WORD = re.compile(rb".{1,39}(?![\x80-\xbf])", re.DOTALL)


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class EmailHeaders:
    """What differs per recipient apart from the bodies."""

    to: str
    subject: str
    message_id: str
    list_unsubscribe: str


def encode_header(name: str, value: str) -> bytes:
    """`Name: value` + CRLF, RFC 2047-encoded and folded when it is not short ASCII."""
    value = " ".join(value.split())  # no CR/LF can smuggle a header in
    if value.isascii() and len(name) + len(value) + 2 <= _MAX_PLAIN_HEADER:
        return f"{name}: {value}\r\n".encode()
    if value.isascii():
        return f"{name}: {Header(value, 'us-ascii', header_name=name).encode(linesep=chr(13) + chr(10))}\r\n".encode()
    words = [binascii.b2a_base64(chunk, newline=False) for chunk in _WORD.findall(value.encode())]
    return b"".join((name.encode(), b": =?utf-8?b?", b"?=\r\n =?utf-8?b?".join(words), b"?=\r\n"))


def encode_body(text: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body): QP for ASCII, base64 for other scripts."""
    data = text.encode()
    if "\r" in text:
        data = data.replace(b"\r\n", b"\n")
    if text.isascii():
        return b"quoted-printable", binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
    return b"base64", _lines(binascii.b2a_base64(data.replace(b"\n", b"\r\n"), newline=False))


def _lines(base64: bytes) -> bytes:
    """`base64` in lines of 76 characters joined by CRLF. One struct unpack cuts every whole line
    in C: a third faster than a regex findall, twice as fast as slicing in a Python loop."""
    count = len(base64) // 76
    lines = _line_unpacker(count).unpack_from(base64)
    tail = base64[count * 76 :]
    return b"\r\n".join((*lines, tail) if tail else lines)


@lru_cache(maxsize=64)
def _line_unpacker(count: int) -> struct.Struct:
    return struct.Struct("76s" * count)


class _Clock:
    """RFC 5322 Date header, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._value


class MimeSkeleton:
    """A multipart/alternative (text + HTML) email whose fixed bytes are encoded once."""

    def __init__(self, from_name: str, from_address: str, lang: str) -> None:
        self.boundary = "=_ecrm_" + secrets.token_hex(8)
        sender = formataddr((from_name, from_address), charset="utf-8")
        self._head = encode_header("From", sender) + b"MIME-Version: 1.0\r\n"
        self._after_headers = (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            + f"Content-Language: {lang}\r\n".encode()
            + f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n\r\n'.encode()
        )
        self._text_part = f'--{self.boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'.encode()
        self._html_part = f'\r\n--{self.boundary}\r\nContent-Type: text/html; charset="utf-8"\r\n'.encode()
        self._end = f"\r\n--{self.boundary}--\r\n".encode()
        self._clock = _Clock()

    def build(self, headers: EmailHeaders, text: str, html: str) -> bytes:
        text_cte, text_body = encode_body(text)
        html_cte, html_body = encode_body(html)
        return b"".join((
            self._head,
            self._clock.header(),
            encode_header("To", headers.to),
            encode_header("Subject", headers.subject),
            f"Message-ID: {headers.message_id}\r\nList-Unsubscribe: {headers.list_unsubscribe}\r\n".encode(),
            self._after_headers,
            self._text_part, b"Content-Transfer-Encoding: ", text_cte, b"\r\n\r\n", text_body,
            self._html_part, b"Content-Transfer-Encoding: ", html_cte, b"\r\n\r\n", html_body,
            self._end,
        ))

"""How many SMS parts a text takes, counted the way Twilio counts them.

A text made only of characters of the GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1, "GSM
03.38") goes as GSM-7: one unit (septet) per character of the basic table, two for a character
of the extension table (the escape 0x1B and its code). Anything else (Persian, Thai, emoji, `ç`,
typographic quotes, a no-break space) sends the whole text as UCS-2: one unit per UTF-16 code
unit, so a character outside the Basic Multilingual Plane (most emoji) takes two.

A single SMS holds 160 GSM-7 units or 70 UCS-2 units. A longer text is split into parts that
each lose 6 octets to the concatenation header: 153 GSM-7 units or 67 UCS-2 units a part. A part
never ends in the middle of a character: an extension character's escape pair and a surrogate
pair move whole to the next part, and so does a grapheme cluster in UCS-2 (an emoji with a skin
tone or a ZWJ family, a flag, a letter with combining marks), as Twilio's own segment calculator
(TwilioDevEd/message-segment-calculator) does, unless the cluster alone is longer than a part.

Twilio's "smart encoding" (a Messaging Service setting) replaces some Unicode look-alikes (curly
quotes, long dashes, unusual spaces) with GSM-7 characters before sending; it is not applied here:
the text is counted as it is given, which is what Twilio sends when smart encoding is off.

The empty text counts as GSM-7, 0 units, 1 part, as Twilio's calculator does; Twilio refuses an
empty body (error 21602), which is for the sending side to check, not this count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import regex

from ecrm.errors import SmsTextError

Encoding = Literal["GSM-7", "UCS-2"]

# The basic table, row by row in code order 0x00..0x7F; 0x1B is the escape to the extension
# table, not a character (the \x1b placeholder is left out of GSM7_BASIC below).
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F (0x09 is capital C with cedilla; small ç is not GSM-7)
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1bÆæßÉ"  # 0x10-0x1F: Greek ΔΦΓΛΩΠΨΣΘΞ
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F (0x24 is the currency sign ¤, the dollar is 0x02)
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)
_ESCAPE = 0x1B
GSM7_BASIC: frozenset[str] = frozenset(ch for code, ch in enumerate(GSM7_BASIC_TABLE) if code != _ESCAPE)

# The extension table: the code that follows the escape, and the character it stands for.
GSM7_EXTENSION_CODES: dict[int, str] = {
    0x0A: "\f",  # form feed (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
GSM7_EXTENSION: frozenset[str] = frozenset(GSM7_EXTENSION_CODES.values())
GSM7: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION

SINGLE: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
PER_PART: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}

# One grapheme cluster (UAX #29), except that CR LF is two characters, as Twilio counts them.
_CLUSTER = regex.compile(r"[\r\n]|\X")


@dataclass(frozen=True)
class SmsParts:
    encoding: Encoding
    units: int
    parts: int

    def describe(self) -> str:
        """`GSM-7, 162 units, 2 parts`."""
        return f"{self.encoding}, {_plural(self.units, 'unit')}, {_plural(self.parts, 'part')}"


def count(text: str) -> SmsParts:
    """The encoding, units and parts of `text`; SmsTextError if it is not valid Unicode."""
    encoding = encoding_of(text)
    units = _total_units(text, encoding)
    if units <= SINGLE[encoding]:
        return SmsParts(encoding, units, 1)
    pieces = _pieces(text, encoding)
    if len(pieces) == units:  # every piece is one unit: no boundary to respect
        return SmsParts(encoding, units, -(-units // PER_PART[encoding]))
    return SmsParts(encoding, units, len(_fill(pieces, encoding)))


def encoding_of(text: str) -> Encoding:
    return "GSM-7" if GSM7.issuperset(text) else "UCS-2"


def split(text: str) -> list[str]:
    """The parts `text` is sent in: they join back to `text`, each fits its part, and none ends
    inside a character (or a grapheme cluster in UCS-2, unless the cluster fills a part alone)."""
    encoding = encoding_of(text)
    if _total_units(text, encoding) <= SINGLE[encoding]:
        return [text]
    return ["".join(part) for part in _fill(_pieces(text, encoding), encoding)]


def stdin_text(data: bytes) -> str:
    """The text given on standard input: UTF-8, less the one line break that ends the input."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmsTextError(f"standard input is not UTF-8 (byte {exc.start + 1} of {len(data)}); "
                           "save the text as UTF-8") from exc
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def _total_units(text: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return len(text) + sum(map(text.count, GSM7_EXTENSION))
    return _utf16_units(text)


def _pieces(text: str, encoding: Encoding) -> list[str]:
    """What a part boundary may not cut: characters in GSM-7, grapheme clusters in UCS-2."""
    return list(text) if encoding == "GSM-7" else _CLUSTER.findall(text)


def _fill(pieces: list[str], encoding: Encoding) -> list[list[str]]:
    """The pieces in parts, each part filled until the next piece would not fit."""
    limit = PER_PART[encoding]
    parts: list[list[str]] = [[]]
    filled = 0
    for piece, units in _sized(pieces, encoding):
        if filled + units > limit:
            parts.append([])
            filled = 0
        parts[-1].append(piece)
        filled += units
    return parts


def _sized(pieces: list[str], encoding: Encoding) -> Iterator[tuple[str, int]]:
    """Each piece and its units; a cluster longer than a whole part is broken into its characters."""
    for piece in pieces:
        units = _units(piece, encoding)
        if units <= PER_PART[encoding]:
            yield piece, units
        else:
            yield from ((char, _units(char, encoding)) for char in piece)


def _units(piece: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return len(piece) + (piece in GSM7_EXTENSION)
    return len(piece) + sum(ord(ch) > 0xFFFF for ch in piece)  # a non-BMP character is a surrogate pair


def _utf16_units(text: str) -> int:
    try:
        return len(text.encode("utf-16-le")) // 2
    except UnicodeEncodeError as exc:
        raise SmsTextError(f"the text is not valid Unicode: character {exc.start + 1} "
                           f"(U+{ord(text[exc.start]):04X}) is half of a surrogate pair or bytes that were "
                           "not UTF-8; save the text as UTF-8") from exc


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

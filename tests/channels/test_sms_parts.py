"""SMS parts: GSM-7 against UCS-2, units and parts as Twilio counts them, and `ecrm sms count`."""

from __future__ import annotations

import json
import math
import os
import string
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrm.channels.sms.parts import (
    GSM7,
    GSM7_BASIC,
    GSM7_BASIC_TABLE,
    GSM7_EXTENSION,
    GSM7_EXTENSION_CODES,
    PER_PART,
    SINGLE,
    SmsParts,
    count,
    split,
    stdin_text,
)
from ecrm.errors import SmsTextError
from tests.conftest import ROOT

EXTENSION_CHARS = "€[]{}~^\\|\f"
PERSIAN = "سلام دوست عزیز، سفارش شما ارسال شد"
THAI = "สวัสดีครับ คำสั่งซื้อของคุณถูกจัดส่งแล้ว"
DIGITS = "1234567890" * 20

# 3GPP TS 23.038 §6.2.1, the default alphabet's characters outside ASCII, by code and Unicode name:
# typed apart from the table in parts.py so that a look-alike glyph there (Latin for Greek) fails.
SPEC_NON_ASCII = {
    0x01: "POUND SIGN", 0x03: "YEN SIGN", 0x04: "LATIN SMALL LETTER E WITH GRAVE",
    0x05: "LATIN SMALL LETTER E WITH ACUTE", 0x06: "LATIN SMALL LETTER U WITH GRAVE",
    0x07: "LATIN SMALL LETTER I WITH GRAVE", 0x08: "LATIN SMALL LETTER O WITH GRAVE",
    0x09: "LATIN CAPITAL LETTER C WITH CEDILLA", 0x0B: "LATIN CAPITAL LETTER O WITH STROKE",
    0x0C: "LATIN SMALL LETTER O WITH STROKE", 0x0E: "LATIN CAPITAL LETTER A WITH RING ABOVE",
    0x0F: "LATIN SMALL LETTER A WITH RING ABOVE", 0x10: "GREEK CAPITAL LETTER DELTA",
    0x12: "GREEK CAPITAL LETTER PHI", 0x13: "GREEK CAPITAL LETTER GAMMA", 0x14: "GREEK CAPITAL LETTER LAMDA",
    0x15: "GREEK CAPITAL LETTER OMEGA", 0x16: "GREEK CAPITAL LETTER PI", 0x17: "GREEK CAPITAL LETTER PSI",
    0x18: "GREEK CAPITAL LETTER SIGMA", 0x19: "GREEK CAPITAL LETTER THETA", 0x1A: "GREEK CAPITAL LETTER XI",
    0x1C: "LATIN CAPITAL LETTER AE", 0x1D: "LATIN SMALL LETTER AE", 0x1E: "LATIN SMALL LETTER SHARP S",
    0x1F: "LATIN CAPITAL LETTER E WITH ACUTE", 0x24: "CURRENCY SIGN", 0x40: "INVERTED EXCLAMATION MARK",
    0x5B: "LATIN CAPITAL LETTER A WITH DIAERESIS", 0x5C: "LATIN CAPITAL LETTER O WITH DIAERESIS",
    0x5D: "LATIN CAPITAL LETTER N WITH TILDE", 0x5E: "LATIN CAPITAL LETTER U WITH DIAERESIS",
    0x5F: "SECTION SIGN", 0x60: "INVERTED QUESTION MARK", 0x7B: "LATIN SMALL LETTER A WITH DIAERESIS",
    0x7C: "LATIN SMALL LETTER O WITH DIAERESIS", 0x7D: "LATIN SMALL LETTER N WITH TILDE",
    0x7E: "LATIN SMALL LETTER U WITH DIAERESIS", 0x7F: "LATIN SMALL LETTER A WITH GRAVE",
}
# ASCII characters the default alphabet places elsewhere than their ASCII code.
SPEC_MOVED_ASCII = {0x00: "@", 0x02: "$", 0x0A: "\n", 0x0D: "\r", 0x11: "_"}


def test_the_basic_table_is_the_specs_code_for_code() -> None:
    assert len(GSM7_BASIC_TABLE) == 128
    for code, name in SPEC_NON_ASCII.items():
        assert GSM7_BASIC_TABLE[code] == unicodedata.lookup(name), hex(code)
    for code, char in SPEC_MOVED_ASCII.items():
        assert GSM7_BASIC_TABLE[code] == char, hex(code)
    ascii_in_place = set(range(0x20, 0x80)) - {0x24, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60} - set(range(0x7B, 0x80))
    for code in ascii_in_place:
        assert GSM7_BASIC_TABLE[code] == chr(code), hex(code)
    assert len(GSM7_BASIC) == 127  # 0x1B is the escape, not a character
    assert "\x1b" not in GSM7


def test_the_extension_table_is_the_specs() -> None:
    assert GSM7_EXTENSION_CODES == {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                                    0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_printable_ascii_is_gsm7_but_the_backquote_and_tabs() -> None:
    assert sorted(set(string.printable) - GSM7) == ["\t", "\x0b", "`"]


CASES: list[tuple[str, str, SmsParts]] = [
    ("empty", "", SmsParts("GSM-7", 0, 1)),
    ("160 GSM-7 in one", DIGITS[:160], SmsParts("GSM-7", 160, 1)),
    ("161 GSM-7 in two", DIGITS[:160] + "1", SmsParts("GSM-7", 161, 2)),
    ("153*2 in two", "a" * 306, SmsParts("GSM-7", 306, 2)),
    ("153*2+1 in three", "a" * 307, SmsParts("GSM-7", 307, 3)),
    ("80 euros are 160 units", "€" * 80, SmsParts("GSM-7", 160, 1)),
    ("81 euros are 162 units", "€" * 81, SmsParts("GSM-7", 162, 2)),
    ("an escape pair moves whole to the next part", "a" * 152 + "{" + "a" * 152, SmsParts("GSM-7", 306, 3)),
    ("Ç is GSM-7", "Ç" * 160, SmsParts("GSM-7", 160, 1)),
    ("ç is not", "ç", SmsParts("UCS-2", 1, 1)),
    ("70 ç in one", "ç" * 70, SmsParts("UCS-2", 70, 1)),
    ("71 ç in two", "ç" * 71, SmsParts("UCS-2", 71, 2)),
    ("67*2+1 in three", "ç" * 135, SmsParts("UCS-2", 135, 3)),
    ("Persian", PERSIAN, SmsParts("UCS-2", len(PERSIAN), 1)),
    ("Thai", THAI, SmsParts("UCS-2", len(THAI), 1)),
    ("Persian, two parts", PERSIAN * 3, SmsParts("UCS-2", 3 * len(PERSIAN), 2)),
    ("35 emoji are 70 units", "😀" * 35, SmsParts("UCS-2", 70, 1)),
    ("36 emoji are 72 units", "😀" * 36, SmsParts("UCS-2", 72, 2)),
    ("a surrogate pair moves whole to the next part", "a" * 66 + "😀" + "a" * 66, SmsParts("UCS-2", 134, 3)),
    ("one emoji makes GSM-7 text UCS-2", "Hello [Sara] " + "😀", SmsParts("UCS-2", 15, 1)),
    ("an extension character is one unit in UCS-2", "😀" + "]" * 68, SmsParts("UCS-2", 70, 1)),
    ("159 GSM-7 and an emoji", "a" * 159 + "😀", SmsParts("UCS-2", 161, 3)),
    ("a skin tone stays with its emoji", "a" * 65 + "👍🏽" + "a" * 65, SmsParts("UCS-2", 134, 3)),
    ("a letter with its accents stays whole", "a" * 66 + "e\u0301" + "a" * 66, SmsParts("UCS-2", 134, 3)),
    ("a cluster longer than a part is cut", "e" + "\u0301" * 100, SmsParts("UCS-2", 101, 2)),
    ("LF and CR are one unit each", "a\nb\r\nc\r", SmsParts("GSM-7", 7, 1)),
    ("form feed is an extension character", "\f" * 80, SmsParts("GSM-7", 160, 1)),
    ("a no-break space is not GSM-7", "50\u00a0€", SmsParts("UCS-2", 4, 1)),
    ("a curly quote is not GSM-7 (no smart encoding)", "it\u2019s", SmsParts("UCS-2", 4, 1)),
    ("a backquote is not GSM-7", "`", SmsParts("UCS-2", 1, 1)),
    # TwilioDevEd/message-segment-calculator's own cases
    ("calculator: UCS-2 in one", "😜" + DIGITS[1:69], SmsParts("UCS-2", 70, 1)),
    ("calculator: UCS-2 in two", "😜" + DIGITS[1:70], SmsParts("UCS-2", 71, 2)),
    ("calculator: UCS-2 in three", "😜" + DIGITS[1:134], SmsParts("UCS-2", 135, 3)),
    ("calculator: a flag at the boundary", "🇮🇹" + DIGITS[1:67], SmsParts("UCS-2", 70, 1)),
    ("calculator: a flag past it", "🇮🇹" + DIGITS[1:68], SmsParts("UCS-2", 71, 2)),
    ("calculator: a ZWJ flag at the boundary", "🏳️‍🌈" + DIGITS[1:65], SmsParts("UCS-2", 70, 1)),
    ("calculator: triple accents", "é\u0301\u0301\u0301" + "a" * 66, SmsParts("UCS-2", 70, 1)),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_count(text: str, expected: SmsParts) -> None:
    assert count(text) == expected
    assert len(split(text)) == expected.parts
    assert "".join(split(text)) == text


@pytest.mark.parametrize("char", EXTENSION_CHARS)
def test_an_extension_character_counts_two(char: str) -> None:
    assert count(char) == SmsParts("GSM-7", 2, 1)
    assert count("x" * 158 + char) == SmsParts("GSM-7", 160, 1)
    assert count("x" * 159 + char) == SmsParts("GSM-7", 161, 2)
    first, second = split("x" * 152 + char + "x" * 10)  # 152 + 2 > 153: the pair opens part two
    assert (first, second) == ("x" * 152, char + "x" * 10)


def test_a_surrogate_pair_opens_the_next_part_rather_than_being_cut() -> None:
    first, second, third = split("a" * 66 + "😀" + "a" * 66)
    assert (first, second, third) == ("a" * 66, "😀" + "a" * 65, "a")


def test_a_skin_toned_emoji_is_not_cut_from_its_tone() -> None:
    parts = split("a" * 65 + "👍🏽" + "a" * 65)
    assert parts[1].startswith("👍🏽")


def test_a_lone_surrogate_is_refused_with_a_sentence() -> None:
    with pytest.raises(SmsTextError, match=r"character 3 \(U\+DCFF\).*UTF-8"):
        count("ab\udcff")


def test_standard_input_is_utf8_less_one_line_break() -> None:
    assert stdin_text("سلام\n".encode()) == "سلام"
    assert stdin_text(b"hello\r\n") == "hello"
    assert stdin_text(b"hello\n\n") == "hello\n"
    assert stdin_text(b"hello\r") == "hello\r"
    with pytest.raises(SmsTextError, match="standard input is not UTF-8"):
        stdin_text(b"\xffhello")


def _units(part: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return len(part) + sum(ch in EXTENSION_CHARS for ch in part)
    return len(part.encode("utf-16-le")) // 2


_any_char = st.characters(codec="utf-8")  # no lone surrogates
_texts = st.one_of(
    st.text(st.sampled_from(sorted(GSM7)), max_size=500),
    st.text(st.one_of(st.sampled_from(sorted(GSM7)), _any_char), max_size=400),
    st.lists(st.sampled_from(["a", "😀", "👍🏽", "e\u0301", "€", "ç", "\r\n"]), max_size=200).map("".join),
)


@given(_texts)
def test_parts_rebuild_the_text_and_each_fits(text: str) -> None:
    result = count(text)
    parts = split(text)
    assert "".join(parts) == text
    assert len(parts) == result.parts
    assert result.units == _units(text, result.encoding)
    assert result.encoding == ("GSM-7" if set(text) <= GSM7 else "UCS-2")
    if result.parts == 1:
        assert result.units <= SINGLE[result.encoding]
    else:
        assert result.units > SINGLE[result.encoding]
        assert result.parts * PER_PART[result.encoding] >= result.units
        assert all(0 < _units(part, result.encoding) <= PER_PART[result.encoding] for part in parts)
    if result.encoding == "GSM-7" and result.parts > 1:  # a part closes only when 2 units won't fit
        assert result.parts <= math.ceil(result.units / (PER_PART["GSM-7"] - 1))


def _ecrm(*args: str, stdin: bytes = b"", cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECRM_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "ecrm", "sms", "count", *args], input=stdin, cwd=cwd, env=env,
                          capture_output=True, timeout=60, check=False)


def test_cli_counts_a_text() -> None:
    done = _ecrm("a" * 160 + "{}")
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, "GSM-7, 164 units, 2 parts\n", b"")


def test_cli_reads_standard_input_and_prints_json() -> None:
    done = _ecrm("-", "--json", stdin=("سلام 😀" * 12 + "\n").encode())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"encoding": "UCS-2", "units": 84, "parts": 2}


def test_cli_singular_and_the_single_part_limit_from_stdin() -> None:
    assert _ecrm("-", stdin=b"a" * 160 + b"\n").stdout.decode() == "GSM-7, 160 units, 1 part\n"
    assert _ecrm("€").stdout.decode() == "GSM-7, 2 units, 1 part\n"


def test_cli_needs_no_config_or_database(tmp_path: Path) -> None:
    done = _ecrm("--json", "Hi", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"encoding": "GSM-7", "units": 2, "parts": 1}
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_bytes_that_are_not_utf8_in_one_line() -> None:
    done = _ecrm("-", stdin=b"caf\xe9\n")
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode() == "error: standard input is not UTF-8 (byte 4 of 5); save the text as UTF-8\n"

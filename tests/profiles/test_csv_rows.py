"""A CSV row's cells as ProfileIn: the quick path gives exactly what pydantic gives, and leaves
every row it cannot vouch for (and so every refusal) to pydantic."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from ecrm.profiles.csv_rows import CsvRows
from ecrm.profiles.ingest import (
    Email,
    ProfileIn,
    compact_json,
    plain_email,
    text_traits_within,
    traits_size,
)

EMAIL = TypeAdapter(Email)
HEADER = ["external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone", "consent_email",
          "consent_sms", "tier", "Email"]
ROWS = CsvRows(HEADER, "csv:people.csv")


def _email(value: str) -> str | None:
    try:
        return EMAIL.validate_python(value)
    except ValidationError:
        return None


@pytest.mark.parametrize(("given_", "expected"), [
    ("Ana.Silva@Example.COM", "ana.silva@example.com"),
    ("a+tag_1-x@mail.shop.example", "a+tag_1-x@mail.shop.example"),
    ("imp12@shop.example", "imp12@shop.example"),
    ("Postmaster@Example.com", "postmaster@example.com"),
])
def test_a_plain_address_is_taken_as_email_takes_it(given_: str, expected: str) -> None:
    assert plain_email(given_) == _email(given_) == expected


@pytest.mark.parametrize("address", [
    "nope", "a@b", "a@localhost", "a@x.local", "a@x.arpa", "a@x.test", "a@x.invalid", "a@x.onion",
    "a@xn--bcher-kva.example", "a@ab--cd.example", "jos\u00e9@example.com", "a@ex\u00e4mple.com",
    "Ana <a@example.com>", '"a b"@example.com', "a..b@example.com", ".a@example.com", "a.@example.com",
    "a@-x.com", "a@x-.com", "a@x.123", "a@x.c0m1", "a@" + "x" * 64 + ".com", "a@x.com.", "a@x..com",
    "a" * 250 + "@x.com", "a!b@example.com", "a@[127.0.0.1]", " a@example.com", "a@example.com\n",
])
def test_anything_else_is_left_to_email_validator(address: str) -> None:
    assert plain_email(address) is None


_PIECES = st.sampled_from([
    "a", "Z", "0", "9", ".", "-", "_", "+", "@", "@", "..", "--", "xn--", "com", "co.th", ".local", ".arpa",
    ".test", ".example", "\u00e9", "\u0131", " ", "<", ">", '"', "!", "localhost", "x" * 63, "1.2", "A.B",
])


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=12).map("".join))
def test_whenever_the_plain_check_answers_email_gives_the_same(address: str) -> None:
    quick = plain_email(address)
    if quick is not None:
        assert quick == _email(address)


def test_pydantic_strips_no_character_that_str_strip_keeps() -> None:
    """Cells are stripped by str.strip; Text strips again, which must then change nothing."""
    stripped = TypeAdapter(list[Annotated[str, StringConstraints(strip_whitespace=True)]])
    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    padded = stripped.validate_python([f"{c}x{c}" for c in characters])
    assert [c for c, value in zip(characters, padded, strict=True) if value == "x" and c.strip()] == []


def test_a_plain_row_is_built_without_pydantic_and_equals_what_pydantic_builds() -> None:
    cells = ["c-1", "Ana@Example.com", "+66812345678", "Ana", "Silva", "th-TH", "Asia/Bangkok", "YES", "0",
             "gold", ""]
    quick = ROWS.quick(cells)
    assert quick is not None
    assert quick == ProfileIn.model_validate(ROWS.input(cells))
    assert quick.model_fields_set == ProfileIn.model_validate(ROWS.input(cells)).model_fields_set
    assert (quick.email, quick.locale, quick.traits, {c.value: s.state.value for c, s in quick.consent.items()}) == (
        "ana@example.com", "th_TH", {"tier": "gold"}, {"email": "granted", "sms": "withdrawn"})


@pytest.mark.parametrize("cells", [
    ["c-1", "josé@example.com"],  # valid, but only EmailStr can tell
    ["c-1", "", "0812345678"],  # a phone without its country code
    ["c-1", "", "", "", "", "xx-invalid"],
    ["c-1", "", "", "", "", "", "Mars/Base"],
    ["c-1", "", "", "", "", "", "", "maybe"],
    ["c-1", "", "", "A\x00na"],
    ["c-1", "", "", "", "", "", "", "", "", "go\x00ld"],
    ["", "a@example.com"],
    ["c" * 201],
])
def test_a_row_the_quick_path_cannot_vouch_for_is_left_to_pydantic(cells: list[str]) -> None:
    assert ROWS.quick(cells) is None


_CELLS = st.sampled_from([
    "", " ", "c-1", " c-2 ", "x" * 200, "x" * 201, "a\x00b", "Ana", "ana@example.com", "Ana@Example.COM ",
    "nope", "a@localhost", "jos\u00e9@example.com", "+66812345678", "0812345678", "+1 650 253 0000", "th", "en-US",
    "xx-invalid", "Asia/Bangkok", "Mars/Base", "UTC", "yes", "No", "withdrawn", "maybe", "1", "\u00a0Ana\u2003",
])


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_CELLS, min_size=1, max_size=len(HEADER)))
def test_a_row_gives_what_pydantic_gives_or_raises_what_it_raises(cells: list[str]) -> None:
    try:
        expected: ProfileIn | str = ProfileIn.model_validate(ROWS.input(cells))
    except ValidationError as exc:
        expected = str(exc)
    try:
        got: ProfileIn | str = ROWS.profile(cells)
    except ValidationError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, ProfileIn) and isinstance(expected, ProfileIn):
        assert got.model_fields_set == expected.model_fields_set


def test_the_external_id_of_a_row_is_the_last_named_one() -> None:
    rows = CsvRows(["External_ID", "email", "external_id"], "csv:x.csv")
    assert rows.external_id([" a ", "", " "]) == "a"
    assert rows.external_id(["a", "", "b"]) == "b"
    assert rows.external_id(["", "x"]) == ""
    assert rows.input(["a", "", "b"])["external_id"] == "b"


def test_a_trait_column_whose_name_holds_nul_is_refused_by_pydantic() -> None:
    rows = CsvRows(["external_id", "no\x00te"], "csv:x.csv")
    assert rows.quick(["c-1", "x"]) is None
    with pytest.raises(ValidationError, match="NUL"):
        rows.profile(["c-1", "x"])
    assert rows.profile(["c-1", ""]).traits == {}


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=6), st.integers(2, 600))
def test_traits_the_bound_passes_are_within_the_cap(traits: dict[str, str], limit: int) -> None:
    if text_traits_within(traits, limit):
        assert traits_size(traits) <= limit


def test_the_bound_passes_ordinary_traits_under_the_default_cap() -> None:
    assert text_traits_within({"tier": "gold", "city": "Bangkok"}, 64 * 1024)
    assert not text_traits_within({"note": "x" * 20_000}, 64 * 1024)


_JSON_VALUES = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2))


@given(st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=40), _JSON_VALUES), max_size=5))
def test_compact_json_writes_what_json_dumps_writes(value: dict[str, Any]) -> None:
    assert compact_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))

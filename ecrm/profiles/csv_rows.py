"""A CSV import's rows as profiles: what each column of the header fills, and each row's cells
validated as ProfileIn.

A row whose every cell passes a cheap check that ProfileIn's own validators are known to accept
unchanged (a plain address as `plain_email` tells, a text within its length and without NUL, a
known locale or time zone, a valid phone, a consent word) is built without pydantic's
validation: at a million rows, pydantic and EmailStr took most of an import's time. Any other
row goes through `ProfileIn.model_validate`, so every refusal, and its message, is ProfileIn's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from ecrm.profiles.ingest import (
    LOCALE_MAX,
    PHONE_MAX,
    PROFILE_COLUMNS,
    TEXT_MAX,
    TIME_ZONE_MAX,
    ConsentIn,
    ProfileIn,
    known_locale,
    known_time_zone,
    phone_e164,
    plain_email,
)
from ecrm.types import ChannelKind, ConsentState

PROFILE_FIELDS = frozenset(("external_id", *PROFILE_COLUMNS))
CONSENT_COLUMNS = {f"consent_{channel.value}": channel for channel in ChannelKind}
CONSENT_WORDS = {
    **dict.fromkeys(("yes", "true", "1", "granted"), ConsentState.GRANTED),
    **dict.fromkeys(("no", "false", "0", "withdrawn"), ConsentState.WITHDRAWN),
}
Quick = Callable[[str], "str | None"]  # a stripped, non-empty cell as its field takes it; None: ask pydantic


def _text(limit: int, check: Callable[[str], str] | None = None) -> Quick:
    """A cell the field keeps as it is (no NUL, at most `limit` characters), or gives as `check`
    does. The cell is stripped already, and pydantic strips no character str.strip keeps."""
    def quick(value: str) -> str | None:
        if len(value) > limit or "\x00" in value:
            return None
        if check is None:
            return value
        try:
            return check(value)
        except PydanticCustomError:
            return None
    return quick


QUICK: dict[str, Quick] = {
    "external_id": _text(TEXT_MAX), "first_name": _text(TEXT_MAX), "last_name": _text(TEXT_MAX),
    "email": plain_email, "phone": _text(PHONE_MAX, phone_e164), "locale": _text(LOCALE_MAX, known_locale),
    "time_zone": _text(TIME_ZONE_MAX, known_time_zone),
}


_DEFAULTS = {name: field.default for name, field in ProfileIn.model_fields.items()}  # in the fields' order
_ALWAYS_SET = ("traits", "consent")  # every row's input names them, as empty dicts at least


def _constructed(values: dict[str, Any], fields_set: set[str]) -> ProfileIn:
    """What `ProfileIn.model_construct(fields_set, **values)` makes of values for every field,
    without its walk over the fields' aliases and defaults (~5 us a row)."""
    profile = ProfileIn.__new__(ProfileIn)
    object.__setattr__(profile, "__dict__", values)
    object.__setattr__(profile, "__pydantic_fields_set__", fields_set)
    object.__setattr__(profile, "__pydantic_extra__", None)
    object.__setattr__(profile, "__pydantic_private__", None)
    return profile


class CsvRows:
    """The header's columns, and rows of cells as ProfileIn; `source` names the file in consents."""

    def __init__(self, columns: Sequence[str], source: str) -> None:
        self.columns = list(columns)
        self.source = source
        keys = [name.lower() for name in columns]
        self._ids = [i for i, key in enumerate(keys) if key == "external_id"]
        # the quick path's plan, in the columns' order: a later column naming a field again wins
        self._fields = [(i, key, QUICK[key]) for i, key in enumerate(keys) if key in PROFILE_FIELDS]
        self._consents = [(i, CONSENT_COLUMNS[key]) for i, key in enumerate(keys) if key in CONSENT_COLUMNS]
        self._traits = [(i, name) for i, (name, key) in enumerate(zip(columns, keys, strict=True))
                        if key not in PROFILE_FIELDS and key not in CONSENT_COLUMNS]
        self._by_word = _consents_by_word(source)

    def external_id(self, cells: Sequence[str]) -> str:
        """The external id a row names ('' for none), as `input` has it: the last non-empty one."""
        named = [value for i in self._ids if i < len(cells) and (value := cells[i].strip())]
        return named[-1] if named else ""

    def input(self, cells: Sequence[str]) -> dict[str, Any]:
        """A row as ProfileIn's input: empty cells left out, consent words as states, the
        other columns as traits, kept as text."""
        data: dict[str, Any] = {"traits": {}, "consent": {}}
        for column, cell in zip(self.columns, cells, strict=False):
            value, key = cell.strip(), column.lower()
            if not value:
                continue
            if key in PROFILE_FIELDS:
                data[key] = value
            elif key in CONSENT_COLUMNS:
                data["consent"][key.removeprefix("consent_")] = {"state": _consent(value), "source": self.source}
            else:
                data["traits"][column] = value
        return data

    def profile(self, cells: Sequence[str]) -> ProfileIn:
        """The row as ProfileIn; raises ValidationError as `ProfileIn.model_validate(input(cells))`
        would, and otherwise gives what it gives."""
        quick = self.quick(cells)
        return quick if quick is not None else ProfileIn.model_validate(self.input(cells))

    def quick(self, cells: Sequence[str]) -> ProfileIn | None:
        """The row as ProfileIn when every cell passes its cheap check; None: ask pydantic."""
        if len(cells) < len(self.columns):
            cells = [*cells, *[""] * (len(self.columns) - len(cells))]
        values, consent, traits = self._quick_fields(cells), self._quick_consent(cells), self._quick_traits(cells)
        if values is None or "external_id" not in values or consent is None or traits is None:
            return None
        return _constructed({**_DEFAULTS, **values, "traits": traits, "consent": consent}, {*values, *_ALWAYS_SET})

    def _quick_fields(self, cells: Sequence[str]) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        for i, name, check in self._fields:
            if value := cells[i].strip():
                checked = check(value)
                if checked is None:
                    return None
                values[name] = checked
        return values

    def _quick_consent(self, cells: Sequence[str]) -> dict[ChannelKind, ConsentIn] | None:
        consent: dict[ChannelKind, ConsentIn] = {}
        for i, channel in self._consents:
            if value := cells[i].strip():
                given = self._by_word.get(value.lower())
                if given is None:
                    return None
                consent[channel] = given
        return consent

    def _quick_traits(self, cells: Sequence[str]) -> dict[str, str] | None:
        traits: dict[str, str] = {}
        for i, column in self._traits:
            if value := cells[i].strip():
                if "\x00" in value or "\x00" in column:  # pydantic refuses it, with its message
                    return None
                traits[column] = value
        return traits


def _consents_by_word(source: str) -> dict[str, ConsentIn]:
    """A consent from `source` for each word a cell may hold, validated once for every row (none
    when pydantic would refuse the source: then each row with a consent asks it)."""
    try:
        given = {state: ConsentIn.model_validate({"state": state, "source": source}) for state in ConsentState}
    except ValidationError:
        return {}
    return {word: given[state] for word, state in CONSENT_WORDS.items()}


def _consent(value: str) -> str:
    return CONSENT_WORDS.get(value.lower(), value)

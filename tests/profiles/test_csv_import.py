"""CSV import: batches, every bad row reported as file:line, good rows imported."""

from __future__ import annotations

import csv
import gc
import multiprocessing
import os
import signal
import sys
import weakref
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.errors import SpecError, WorkerProcessError
from ecrm.profiles.csv_import import SWITCH_INTERVAL, _Collections, _decoded, import_csv
from ecrm.profiles.csv_import import count_rows as counted_rows
from ecrm.profiles.ingest import find_profile
from ecrm.profiles.models import Consent, Profile
from tests.conftest import T0
from tests.rows import count_rows

PEOPLE = """\
external_id,email,phone,first_name,locale,time_zone,consent_email,zip,tier
c-1,Ana@Example.com,+66812345678,Ana,th,Asia/Bangkok,yes,01234,gold
c-2,nope,,Ben,en-US,,no,,silver
c-3,cai@example.com,,Cai,fa,Asia/Tehran,,10110,
c-4,dee@example.com,,"Dee, Jr.",,,withdrawn,,bronze
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    return path


async def test_a_bad_row_is_reported_by_file_and_line_and_the_rest_are_imported(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    path = _write(tmp_path, PEOPLE)
    report = await import_csv(sessions, path, clock)
    assert (report.imported, report.created, report.skipped) == (3, 3, 1)
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{path}:3 email: value is not a valid email address")
    assert "(got 'nope')" in report.errors[0]
    assert await count_rows(sessions, Profile) == 3
    assert await count_rows(sessions, Consent) == 2


async def test_columns_map_to_fields_traits_stay_text_and_consent_words_are_understood(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    await import_csv(sessions, _write(tmp_path, PEOPLE), clock)
    async with sessions() as session:
        ana, dee = await find_profile(session, "c-1"), await find_profile(session, "c-4")
        consents = {(c.profile_id, c.state, c.source) for c in await session.scalars(select(Consent))}
    assert ana is not None and dee is not None
    assert (ana.email, ana.locale, ana.time_zone) == ("ana@example.com", "th", "Asia/Bangkok")
    assert ana.traits == {"zip": "01234", "tier": "gold"}
    assert dee.first_name == "Dee, Jr."
    assert consents == {(ana.id, "granted", "csv:people.csv"), (dee.id, "withdrawn", "csv:people.csv")}


async def test_reimporting_updates_without_creating_and_empty_cells_change_nothing(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    await import_csv(sessions, _write(tmp_path, PEOPLE), clock)
    clock.advance(timedelta(days=1))
    path = _write(tmp_path, "external_id,first_name,email,tier\nc-1,Anna,,platinum\n")
    report = await import_csv(sessions, path, clock)
    assert (report.imported, report.created, report.skipped, report.errors) == (1, 0, 0, [])
    async with sessions() as session:
        ana = await find_profile(session, "c-1")
    assert ana is not None
    assert (ana.first_name, ana.email, ana.traits["tier"], ana.traits["zip"]) == (
        "Anna", "ana@example.com", "platinum", "01234")
    assert (ana.created_at, ana.updated_at) == (T0, T0 + timedelta(days=1))


async def test_rows_are_written_in_batches_and_progress_is_reported_after_each(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    lines = "".join(f"c-{i},p{i}@example.com\n" for i in range(5))
    seen: list[int] = []

    def progress(rows: int) -> None:
        seen.append(rows)
        clock.advance(60)

    report = await import_csv(sessions, _write(tmp_path, "external_id,email\n" + lines), clock, progress, batch_size=2)
    assert seen == [2, 4, 5]
    assert report.imported == report.created == 5
    async with sessions() as session:
        stamped = dict((await session.execute(select(Profile.external_id, Profile.created_at))).all())
    minute = timedelta(minutes=1)
    assert stamped == {"c-0": T0, "c-1": T0, "c-2": T0 + minute, "c-3": T0 + minute, "c-4": T0 + 2 * minute}


async def test_every_bad_row_is_reported_not_only_the_first(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    text = ("external_id,email,locale,consent_email\n"
            ",a@example.com,,\n"
            "c-2,b@example.com,xx-invalid,maybe\n"
            "c-3,c@x.io,,,extra\n")
    path = _write(tmp_path, text)
    report = await import_csv(sessions, path, clock)
    assert (report.imported, report.skipped) == (0, 3)
    assert [e.split(": ", 1)[0] for e in report.errors] == [
        f"{path}:2 external_id", f"{path}:3 locale", f"{path}:3 consent_email", f"{path}:4"]
    assert await count_rows(sessions, Profile) == 0


@pytest.mark.parametrize(("text", "problem"), [
    ("email,first_name\na@example.com,Ana\n", "no external_id column"),
    ("", "no external_id column"),
    ("external_id,email,email\nc-1,a@example.com,b@example.com\n", "repeats email"),
])
async def test_a_file_without_a_usable_header_raises_spec_error(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, text: str,
        problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        await import_csv(sessions, _write(tmp_path, text), clock)


async def test_a_missing_file_raises_spec_error_naming_it(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    with pytest.raises(SpecError, match=r"missing\.csv: cannot read the file"):
        await import_csv(sessions, tmp_path / "missing.csv", clock)


async def test_a_line_that_is_not_utf8_is_reported_and_skipped_alone(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    path = tmp_path / "people.csv"
    latin1 = "c-2,José\n".encode("latin-1")
    path.write_bytes("\ufeffexternal_id,first_name\nc-1,Ana\n".encode() + latin1 + "c-3,Zoë\n".encode())
    report = await import_csv(sessions, path, clock)
    assert (report.imported, report.skipped) == (2, 1)
    assert report.errors == [f"{path}:3: the line is not UTF-8 text (save as UTF-8)"]
    async with sessions() as session:
        zoe = await find_profile(session, "c-3")
    assert zoe is not None and zoe.first_name == "Zoë"


async def test_an_import_leaves_the_planner_statistics_on_profiles_and_consents(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    await import_csv(sessions, _write(tmp_path, PEOPLE), clock)
    async with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            query = ("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                     "AND relname IN ('profiles', 'consents') ORDER BY relname")
        else:
            query = "SELECT DISTINCT tbl FROM sqlite_stat1 WHERE tbl IN ('profiles', 'consents') ORDER BY tbl"
        analyzed = list(await session.scalars(text(query)))
    assert analyzed == ["consents", "profiles"]


def _bad_rows(count: int) -> str:
    return "external_id,email\n" + "".join(f"c-{i},not-an-address-{i}\n" for i in range(count))


async def test_every_rejection_goes_to_the_errors_file_and_the_report_keeps_the_first(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    errors = tmp_path / "errors.csv"
    report = await import_csv(sessions, _write(tmp_path, _bad_rows(700)), clock, batch_size=64, errors_file=errors)
    assert (report.imported, report.skipped, report.problems, len(report.shown)) == (0, 700, 700, 50)
    with errors.open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [int(row["line"]) for row in written] == list(range(2, 702))
    assert {row["field"] for row in written} == {"email"}
    assert (written[0]["external_id"], written[-1]["external_id"]) == ("c-0", "c-699")
    assert written[-1]["reason"].endswith("(got 'not-an-address-699')")
    assert report.errors[49].startswith(f"{tmp_path / 'people.csv'}:51 email:")


async def test_an_errors_file_that_cannot_be_written_or_is_the_input_is_refused_before_importing(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    path = _write(tmp_path, PEOPLE)
    with pytest.raises(SpecError, match="would overwrite the file being imported"):
        await import_csv(sessions, path, clock, errors_file=tmp_path / "." / "people.csv")
    with pytest.raises(SpecError, match="cannot write the errors file"):
        await import_csv(sessions, path, clock, errors_file=tmp_path / "no-such-dir" / "errors.csv")
    assert path.read_text() == PEOPLE
    assert await count_rows(sessions, Profile) == 0


async def test_a_repeated_external_id_is_rejected_naming_the_first_line_and_the_first_row_wins(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    text = ("external_id,first_name\n"
            "c-1,Ana\n"
            "c-2,Ben\n"
            "c-1,Anna\n"
            " c-1 ,Ann\n")
    path = _write(tmp_path, text)
    report = await import_csv(sessions, path, clock, batch_size=2)
    assert (report.imported, report.skipped) == (2, 2)
    assert report.errors == [
        f"{path}:{line} external_id: 'c-1' is already on line 2; only the first row is imported "
        "(merge the rows, or import this one on its own)" for line in (4, 5)]
    async with sessions() as session:
        ana = await find_profile(session, "c-1")
    assert ana is not None and ana.first_name == "Ana"


@pytest.mark.parametrize(("word", "state"), [
    ("yes", "granted"), ("True", "granted"), ("1", "granted"), ("GRANTED", "granted"),
    ("No", "withdrawn"), ("false", "withdrawn"), ("0", "withdrawn"), ("withdrawn", "withdrawn"),
])
async def test_consent_takes_yes_no_true_false_1_0_granted_withdrawn_in_any_case(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
        word: str, state: str) -> None:
    report = await import_csv(sessions, _write(tmp_path, f"external_id,consent_email\nc-1,{word}\n"), clock)
    assert report.errors == []
    async with sessions() as session:
        assert list(await session.scalars(select(Consent.state))) == [state]


async def test_an_unknown_consent_word_lists_the_accepted_ones(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    path = _write(tmp_path, "external_id,consent_sms\nc-1,opt-in\n")
    report = await import_csv(sessions, path, clock)
    assert report.errors == [f"{path}:2 consent_sms: expected yes, no, true, false, 1, 0, granted or withdrawn "
                             "(got 'opt-in')"]


async def test_progress_counts_rows_and_ends_at_the_count_made_beforehand(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"external_id,first_name,note\n"
                     b'c-1,Ana,"two\nlines"\n'
                     b"\n\n\n\n"
                     + "c-2,Jos\u00e9,x\n".encode("latin-1")
                     + b'c-3,Cai,"three\nline\nnote"\n'
                     b'c-4,,"bad\nnote",extra\n'
                     b"c-5,Dee,\n")
    seen: list[int] = []
    report = await import_csv(sessions, path, clock, seen.append, batch_size=2)
    assert counted_rows(path) == seen[-1] == report.rows == 5
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert (report.imported, report.skipped) == (3, 2)
    assert [e.split(": ", 1)[0] for e in report.errors] == [f"{path}:8", f"{path}:12"]  # a record's first line
    assert await count_rows(sessions, Profile) == 3


def test_counting_rows_of_a_missing_file_gives_none(tmp_path: Path) -> None:
    assert counted_rows(tmp_path / "missing.csv") is None


async def test_a_row_that_would_grow_traits_past_the_cap_is_rejected_and_the_profile_kept(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    first = _write(tmp_path, "external_id,email,note\nc-1,a@example.com," + "x" * 60 + "\n")
    assert (await import_csv(sessions, first, clock, max_traits_bytes=100)).imported == 1
    grown = tmp_path / "grown.csv"
    grown.write_text("external_id,email,other\n"
                     "c-1,changed@example.com," + "y" * 60 + "\n"  # 60 + 60 bytes of text: over 100
                     "c-2,b@example.com,small\n", encoding="utf-8")
    report = await import_csv(sessions, grown, clock, max_traits_bytes=100)
    assert (report.imported, report.created, report.skipped) == (1, 1, 1)
    assert report.errors == [f"{grown}:2: the profile's traits would take more than 100 bytes "
                             "(api.max_traits_bytes); it was left as it was"]
    async with sessions() as session:
        kept = await find_profile(session, "c-1")
        assert kept is not None and (kept.email, kept.traits) == ("a@example.com", {"note": "x" * 60})


async def test_an_import_leaves_the_garbage_collector_and_the_switch_interval_as_it_found_them(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    """It collects only now and then, and lets the loop take the GIL sooner, while importing,
    and puts both back, even on failure."""
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), sys.getswitchinterval())
    await import_csv(sessions, _write(tmp_path, PEOPLE), clock)

    def interrupted(rows: int) -> None:
        assert not gc.isenabled()
        assert sys.getswitchinterval() <= SWITCH_INTERVAL
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        await import_csv(sessions, _write(tmp_path, PEOPLE), clock, interrupted)
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), sys.getswitchinterval()) == before


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_an_import_collects_garbage_every_so_many_rows() -> None:
    collections = _Collections(every=1000)
    gc.disable()
    try:
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        collections.after(999)
        assert gone() is not None
        collections.after(1000)
        assert gone() is None
    finally:
        gc.enable()


def _either(decode: Callable[[bytes], str], raw: bytes) -> str | None:
    try:
        return decode(raw)
    except UnicodeDecodeError:
        return None


@given(st.one_of(st.binary(max_size=12), st.text(max_size=8).map(str.encode),
                 st.text(max_size=8).map(lambda text: ("\ufeff" + text).encode())))
def test_a_line_is_decoded_as_the_utf8_sig_codec_decodes_it(raw: bytes) -> None:
    assert _either(_decoded, raw) == _either(lambda line: line.decode("utf-8-sig"), raw)


TRICKY = ("external_id,first_name,note,consent_email\n"
          "c-1,Ana,,yes\n"
          "c-2,Ben,,maybe\n"  # a bad consent word
          "c-3,\"tab\tand\\back\\N\",\"two\nlines\",no\n"  # COPY's delimiters and its NULL marker, as text
          "c-1,Anna,,\n"  # repeats line 2, a read before (batches of 3)
          "c-big,Big," + "x" * 120 + ",yes\n"  # traits alone over the cap
          "c-4,Dee,,\n"
          "c-big,Small,y,\n"  # repeats a row refused for its size
          "\n"
          "c-5,Eve,,yes\n"
          "c-5,Eva,,\n"  # repeats the row before, in the same read
          "c-3,Cai,,\n"  # repeats a staged row two reads before
          "c-6,Fay,,,extra\n")  # too many cells


async def _stored(sessions: async_sessionmaker[AsyncSession]
                  ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with sessions() as session:
        profiles = sorted(tuple(row) for row in await session.execute(select(
            Profile.external_id, Profile.first_name, Profile.traits, Profile.locale)))
        consents = sorted(tuple(row) for row in await session.execute(select(
            Profile.external_id, Consent.channel, Consent.state, Consent.source).join(Consent)))
    return profiles, consents


async def test_a_file_read_in_a_process_of_its_own_imports_and_reports_as_one_read_in_a_thread(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    """PostgreSQL reads large files in a child process; the answers are the same either way."""
    path = tmp_path / "people.csv"
    path.write_bytes(TRICKY.encode() + "c-7,Jos\u00e9\n".encode("latin-1") + b"c-8,Gus,,\n")
    outcomes = []
    for reading_process in (False, True):
        seen: list[int] = []
        report = await import_csv(sessions, path, clock, seen.append, batch_size=3, max_traits_bytes=100,
                                  errors_file=tmp_path / "errors.csv", reading_process=reading_process)
        outcomes.append((report, seen, (tmp_path / "errors.csv").read_text(), await _stored(sessions)))
        async with sessions.begin() as session:
            await session.execute(text("DELETE FROM profiles"))
    assert outcomes[0] == outcomes[1]
    report, seen, _, (profiles, consents) = outcomes[1]
    assert (report.rows, report.imported, report.created, report.skipped) == (13, 5, 5, 8)
    assert [error.split(" ", 1)[0].removeprefix(f"{path}:") for error in report.errors] == [
        "3", "6", "7:", "9", "12", "13", "14:", "15:"]
    assert seen == [3, 6, 8, 11, 13]
    assert ("c-3", "tab\tand\\back\\N", {"note": "two\nlines"}, "en") in profiles
    assert [(ext, state) for ext, _, state, _ in consents] == [("c-1", "granted"), ("c-3", "withdrawn"),
                                                              ("c-5", "granted")]


async def test_a_reading_process_that_dies_fails_the_import_which_stores_nothing(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    path = _write(tmp_path, "external_id,consent_email\n" + "".join(f"c-{i},yes\n" for i in range(20_000)))

    def kill_the_reader(rows: int) -> None:
        for child in multiprocessing.active_children():
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)

    async with sessions() as session:
        postgresql = session.get_bind().dialect.name == "postgresql"
    if not postgresql:
        pytest.skip("PostgreSQL only: SQLite reads in a thread")
    with pytest.raises(WorkerProcessError, match="the CSV reading process ended before finishing "
                                                  r"\(killed by signal SIGKILL\)"):
        await import_csv(sessions, path, clock, kill_the_reader, batch_size=10, reading_process=True)
    assert (await count_rows(sessions, Profile), await count_rows(sessions, Consent)) == (0, 0)
    assert multiprocessing.active_children() == []

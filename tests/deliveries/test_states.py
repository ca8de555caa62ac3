"""The delivery state machine, over every pair of states: monotone, idempotent, acyclic, with
soft bounces still open and hard bounces, failures and skips final; `check` knows which reason
goes with which status, `predecessors` agrees with `may_move`, and `sql_guard` selects exactly
the predecessors in a real SQLite database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from ecrm.deliveries.states import (
    ALL_STATES,
    REASONS,
    RESUMABLE,
    DeliveryStatus,
    Reason,
    State,
    check,
    may_move,
    predecessors,
    sql_guard,
)

S = DeliveryStatus
QUEUED: State = (S.QUEUED, None)
SENT: State = (S.SENT, None)
DELIVERED: State = (S.DELIVERED, None)
SOFT: State = (S.BOUNCED, Reason.SOFT)
HARD: State = (S.BOUNCED, Reason.HARD)


def rank(state: State) -> int:
    """How far along the module's diagram a state is: queued, then unknown (may have been
    sent), sent, a soft bounce, delivered, and the final states (hard bounce, failed, skipped)."""
    status, reason = state
    if status is S.BOUNCED:
        return 3 if reason is Reason.SOFT else 5
    return {S.QUEUED: 0, S.UNKNOWN: 1, S.SENT: 2, S.DELIVERED: 4, S.FAILED: 5, S.SKIPPED: 5}[status]


def pairs() -> Iterator[tuple[State, State]]:
    for current in ALL_STATES:
        for new in ALL_STATES:
            yield current, new


def moves() -> list[tuple[State, State]]:
    return [(current, new) for current, new in pairs() if may_move(current, new)]


def test_all_states_are_every_status_with_each_of_its_reasons_and_nothing_else() -> None:
    expected = {(status, reason) for status in DeliveryStatus for reason in REASONS.get(status, {None})}
    assert set(ALL_STATES) == expected
    assert len(ALL_STATES) == len(expected)


def test_every_move_goes_forward_in_the_diagram_except_the_queued_retry() -> None:
    assert moves(), "the machine allows some moves"
    for current, new in moves():
        if current == new:
            assert current == QUEUED
        else:
            assert rank(new) > rank(current), f"{current} -> {new} goes back"


def test_no_move_leads_from_a_settled_status_back_to_queued_sent_or_unknown() -> None:
    settled = {S.DELIVERED, S.BOUNCED, S.FAILED, S.SKIPPED}
    for current, new in pairs():
        if current[0] in settled and new[0] in {S.QUEUED, S.SENT, S.UNKNOWN}:
            assert not may_move(current, new), f"{current} -> {new}"


def test_a_late_sent_callback_never_moves_a_delivered_delivery_back() -> None:
    assert not may_move(DELIVERED, SENT)


def test_the_same_state_again_is_not_a_move_except_queued_to_queued() -> None:
    for state in ALL_STATES:
        assert may_move(state, state) is (state == QUEUED), state


def test_no_walk_through_distinct_states_comes_back_to_where_it_started() -> None:
    graph = {state: {new for new in ALL_STATES if new != state and may_move(state, new)} for state in ALL_STATES}
    for start in ALL_STATES:
        seen: set[State] = set()
        frontier = set(graph[start])
        while frontier:
            state = frontier.pop()
            assert state != start, f"{start} can come back to itself"
            if state not in seen:
                seen.add(state)
                frontier |= graph[state]


def test_a_soft_bounce_may_still_become_delivered_a_hard_bounce_or_failed() -> None:
    assert may_move(SOFT, DELIVERED)
    assert may_move(SOFT, HARD)
    for reason in REASONS[S.FAILED]:
        assert may_move(SOFT, (S.FAILED, reason))


def test_a_hard_bounce_wins_after_delivered_but_a_soft_one_does_not() -> None:
    assert may_move(DELIVERED, HARD)
    assert not may_move(DELIVERED, SOFT)


@pytest.mark.parametrize("final", [state for state in ALL_STATES if state == HARD or
                                   state[0] in {S.FAILED, S.SKIPPED}], ids=str)
def test_a_hard_bounce_a_failure_and_a_skip_are_final(final: State) -> None:
    assert [new for new in ALL_STATES if may_move(final, new)] == []


def test_check_accepts_each_reason_of_a_status_and_no_reason_for_a_status_without_reasons() -> None:
    for status, reason in ALL_STATES:
        assert check(status, reason) == (status, reason)


def test_check_refuses_every_reason_that_does_not_belong_to_its_status() -> None:
    refused = []
    for status in DeliveryStatus:
        for reason in [None, *Reason]:
            if reason in REASONS.get(status, {None}):
                continue
            with pytest.raises(ValueError, match=str(status)):
                check(status, reason)
            refused.append((status, reason))
    assert (S.SENT, Reason.HARD) in refused  # a status without reasons takes none
    assert (S.BOUNCED, None) in refused  # a status with reasons needs one
    assert (S.FAILED, Reason.SOFT) in refused  # and only its own
    assert len(refused) + len(ALL_STATES) == len(DeliveryStatus) * (len(Reason) + 1)


def test_the_resumable_state_is_a_failure_the_machine_itself_never_leaves() -> None:
    assert check(*RESUMABLE) == (S.FAILED, Reason.TEMPORARY_EXHAUSTED)
    assert not any(may_move(RESUMABLE, new) for new in ALL_STATES)


@pytest.mark.parametrize("target", ALL_STATES, ids=str)
def test_predecessors_are_exactly_the_states_that_may_move_to_the_target(target: State) -> None:
    assert predecessors(target) == {state for state in ALL_STATES if may_move(state, target)}


@pytest.fixture
def table() -> Iterator[sqlite3.Connection]:
    """A `deliveries`-like table `d` holding one row per state."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, status TEXT NOT NULL, reason TEXT)")
    db.executemany("INSERT INTO d (status, reason) VALUES (?, ?)",
                   [(str(status), None if reason is None else str(reason)) for status, reason in ALL_STATES])
    yield db
    db.close()


@pytest.mark.parametrize("target", ALL_STATES, ids=str)
def test_sql_guard_selects_exactly_the_rows_that_may_move_to_the_target(
        table: sqlite3.Connection, target: State) -> None:
    rows = table.execute(f"SELECT status, reason FROM d WHERE {sql_guard(target)}").fetchall()
    selected = {(S(status), None if reason is None else Reason(reason)) for status, reason in rows}
    assert len(rows) == len(selected)
    assert selected == predecessors(target)

"""bench.chaos's accounting: which outcomes are expected, lost and duplicated, and its machine-readable last line."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.chaos_tally import Tally, account, last_line, parse_last_line


def tally() -> Tally:
    t = Tally(sent=5)
    t.answer("a")
    t.answer("b")
    t.fail("c", "UNAVAILABLE", "failed to connect to all addresses")  # the gateway was down: never accepted
    t.fail("d", "UNAVAILABLE", "Stream removed")  # cut by a killed gateway after it was accepted
    t.hang("e", "the client's deadline passed")
    return t


def test_an_outcome_is_expected_for_each_answered_or_seen_request():
    t = tally()
    result = account(t, seen={"a", "d", "e"}, stored=Counter({"a": 1, "b": 1, "d": 1, "e": 1}))
    assert result.expected == 4 and result.stored == 4 and result.lost == [] and result.duplicates == 0


def test_lost_and_duplicate_outcomes_are_counted():
    t = tally()
    # b answered without a stored event; d seen without one; a stored three times; "other" is not ours.
    result = account(t, seen={"a", "d"}, stored=Counter({"a": 3, "other": 2, "c": 1}))
    assert result.lost == ["b", "d"]
    assert result.duplicates == 2
    assert result.expected == 3  # a, b, d: c was never accepted, its stored event is not expected


def test_the_last_line_round_trips():
    t = tally()
    result = account(t, seen={"d"}, stored=Counter({"a": 1, "b": 2}))
    line = last_line(t, result)
    assert line == "chaos: sent=5 answered=2 failed=2 hung=1 lost_outcomes=1 duplicate_outcomes=1"
    assert parse_last_line(f"some report\n{line}\n") == {
        "sent": 5,
        "answered": 2,
        "failed": 2,
        "hung": 1,
        "lost_outcomes": 1,
        "duplicate_outcomes": 1,
    }


def test_a_run_that_did_not_finish_has_no_summary_line():
    with pytest.raises(ValueError, match="not a bench.chaos summary line"):
        parse_last_line("chaos: sent=5 answered=2\nTraceback (most recent call last):")


def test_failures_are_grouped_by_code_and_shape():
    t = Tally()
    t.fail("x", "UNAVAILABLE", "tier 'large' did not accept within 2s")
    t.fail("y", "UNAVAILABLE", "tier 'large' did not accept within 1.5s")
    assert t.by_code() == Counter({"UNAVAILABLE": 2})
    assert t.messages["UNAVAILABLE"] == Counter({"tier 'large' did not accept within Ns": 2})
    assert t.end_of("x").startswith("UNAVAILABLE: ") and t.end_of("nobody") == "never sent"

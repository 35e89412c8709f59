from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from feilun.governance.audit import AuditEvent, next_event, verify_chain

KEY = b"k" * 32


def _chain(n: int = 6) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for i in range(n):
        at = datetime(2026, 11, 23, 12, i, tzinfo=UTC)
        previous = events[-1] if events else None
        events.append(next_event(KEY, previous, "admin", "policy.changed", f"t{i}", {"i": i}, at))
    return events


def test_an_untouched_chain_verifies() -> None:
    check = verify_chain(KEY, _chain())
    assert (check.is_valid, check.checked, check.first_bad_seq) == (True, 6, None)
    assert verify_chain(KEY, []).is_valid


def test_an_edit_is_found_at_the_edited_event() -> None:
    events = _chain()
    events[3] = dataclasses.replace(events[3], details={"i": 99})
    check = verify_chain(KEY, events)
    assert (check.is_valid, check.first_bad_seq, check.checked) == (False, 4, 3)
    assert "edited" in check.problem


def test_a_deletion_is_found_where_the_gap_is() -> None:
    events = _chain()
    del events[2]
    check = verify_chain(KEY, events)
    assert (check.first_bad_seq, check.problem) == (3, "event(s) 3 were deleted (next is 4)")


def test_a_reorder_is_found_at_the_first_moved_event() -> None:
    events = _chain()
    events[1], events[4] = events[4], events[1]
    check = verify_chain(KEY, events)
    assert not check.is_valid and check.first_bad_seq == 2 and check.checked == 1


def test_recomputing_hashes_without_the_key_does_not_help() -> None:
    events = _chain()
    forged = [next_event(b"x" * 32, None, "mallory", "key.created", "t0", {})]
    check = verify_chain(KEY, forged + events[1:])
    assert (check.first_bad_seq, check.checked) == (1, 0)


def test_a_renumbered_deletion_breaks_the_link() -> None:
    events = _chain()
    survivor = dataclasses.replace(events[3], seq=3)  # an attacker renumbers after deleting 3
    check = verify_chain(KEY, [*events[:2], survivor])
    assert check.first_bad_seq == 3 and "edited" in check.problem

"""Acks: what a read of one context (or of all) must wait for."""

from __future__ import annotations

from projections.acks import Acks


def test_a_context_waits_for_its_newest_acknowledged_position() -> None:
    acks = Acks()
    assert (acks.newest, acks.of("a")) == (0, 0)
    acks.note("a", 5, applied=0)
    acks.note("b", 7, applied=0)
    acks.note("a", 3, applied=0)  # an older answer arriving late moves nothing back
    assert (acks.of("a"), acks.of("b"), acks.of("c")) == (5, 7, 0)
    assert acks.newest == 7


def test_entries_the_projector_has_passed_are_dropped_beyond_the_limit() -> None:
    acks = Acks(keep=4)
    for i in range(1, 5):
        acks.note(f"c{i}", i, applied=0)
    acks.note("c5", 5, applied=3)  # over the limit: c1..c3 are applied, forget them
    assert [acks.of(f"c{i}") for i in range(1, 6)] == [0, 0, 0, 4, 5]
    assert acks.newest == 5


def test_the_limit_grows_when_nothing_can_be_dropped() -> None:
    acks = Acks(keep=2)
    for i in range(1, 10):
        acks.note(f"c{i}", i, applied=0)  # the projector is behind all of them
    assert [acks.of(f"c{i}") for i in range(1, 10)] == list(range(1, 10))

"""Event and message ids are canonical, time-ordered version-7 UUIDs."""

from __future__ import annotations

import time
import uuid

from eventstore import new_id


def test_ids_are_canonical_version_7_uuids_and_unique() -> None:
    ids = [new_id() for _ in range(5000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_ids_carry_the_millisecond_they_were_minted_in_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    stamps = [uuid.UUID(text).int >> 80 for text in ids]
    assert stamps == sorted(stamps)
    assert before <= stamps[0] <= stamps[-1] <= after
    # The rest is random: ids of one millisecond differ in their last 74 bits.
    assert len({text[14:] for text in ids}) == len(ids)

"""Event and message ids are canonical, random version-4 UUIDs."""

from __future__ import annotations

import uuid

from eventstore import new_id


def test_ids_are_canonical_version_4_uuids_and_unique() -> None:
    ids = [new_id() for _ in range(5000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122

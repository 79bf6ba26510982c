"""The client reads its own writes on any server: a read of a context sends the newest
version of it the client has seen as ``min_version``."""

from __future__ import annotations

from api.client import operations as op
from api.client.versions import Versions
from api.rest.schemas import Appended

CID = "01a242de-c87f-7929-abe6-d96d36d99a0b"


def test_reads_of_a_context_send_the_newest_version_seen() -> None:
    versions = Versions()
    assert "min_version" not in versions.query(op.get_context(CID))  # nothing seen yet
    written = op.append_messages(CID, [])
    versions.note(written, {}, Appended(version=7, message_ids=[]))
    for call in (
        op.get_context(CID),
        op.list_messages(CID),
        op.get_window(CID),
        op.get_history(CID),
        op.get_diff(CID, 1),
        op.get_parent_diff(CID),
    ):
        assert versions.query(call)["min_version"] == "7", call.operation
    assert "min_version" not in versions.query(op.get_context("another"))
    # A write is not a read: it says what it expects with If-Match instead.
    assert "min_version" not in versions.query(op.append_messages(CID, []))

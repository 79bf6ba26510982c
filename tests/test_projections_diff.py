"""Diffs between states: versions of one context, and a fork against its parent."""

from __future__ import annotations

from eventstore.events import (
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    SummaryAdded,
    WindowConfigured,
    WindowSettings,
)
from projections import MetadataChange, WindowChange, diff, metadata_changes
from tests.support.factories import Stream, created, msg, resolver


def test_same_state_has_an_empty_diff() -> None:
    state = Stream().add(created(a=1), msg("m1", "x")).state()
    d = diff(state, state)
    assert d.empty
    assert (d.from_version, d.to_version) == (2, 2)


def test_messages_added_edited_redacted_between_versions() -> None:
    s = Stream().add(created(), msg("m1", "one"), msg("m2", "two"), msg("m3", "three"))  # v4
    s.add(MessageEdited(message_id="m1", content="ONE"), MessageRedacted(message_id="m2"))
    s.add(msg("m4", "four"))
    d = diff(s.state(4), s.state())
    assert d.added == ("m4",)
    assert d.removed == ()
    assert d.edited == ("m1",)
    assert d.redacted == ("m2",)
    assert not d.empty


def test_rollback_shows_as_removed_and_restored_messages() -> None:
    s = Stream().add(created(), msg("m1", "one"), MessageRedacted(message_id="m1"))  # v3
    s.add(msg("m2", "two"), ContextRolledBack(to_version=2))
    d = diff(s.state(4), s.state())
    assert d.removed == ("m2",)
    assert d.edited == ("m1",)  # un-redacted by the rollback
    assert d.redacted == ()
    assert d.added == ()


def test_metadata_changes_are_json_pointer_paths() -> None:
    s = Stream().add(created(keep=1, gone=2, nested={"a": 1, "b": {"c": 2}}, flag=1))
    s.add(MetadataUpdated(patch={"gone": None, "new/key": "x", "nested": {"b": {"c": 3}}}))
    s.add(MetadataUpdated(patch={"flag": True}))
    d = diff(s.state(1), s.state())
    assert d.metadata == (
        MetadataChange(path="/flag", kind="changed", old=1, new=True),
        MetadataChange(path="/gone", kind="removed", old=2),
        MetadataChange(path="/nested/b/c", kind="changed", old=2, new=3),
        MetadataChange(path="/new~1key", kind="added", new="x"),
    )


def test_metadata_changes_compare_lists_and_type_changes_whole() -> None:
    assert metadata_changes({"l": [1, 2]}, {"l": [1, 2]}) == []
    assert metadata_changes({"l": [1, 2]}, {"l": [2, 1]}) == [
        MetadataChange(path="/l", kind="changed", old=[1, 2], new=[2, 1])
    ]
    assert metadata_changes({"o": {"a": 1}}, {"o": "flat"}) == [
        MetadataChange(path="/o", kind="changed", old={"a": 1}, new="flat")
    ]
    assert metadata_changes({"t~": 1}, {}) == [MetadataChange(path="/t~0", kind="removed", old=1)]


def test_window_summary_and_delete_changes() -> None:
    s = Stream().add(created(), msg("m1", "x"))
    s.add(WindowConfigured(window=WindowSettings(max_tokens=100, model="gpt-4")))
    s.add(SummaryAdded(summary_id="s1", text="sum", through_message_id="m1"), ContextDeleted())
    d = diff(s.state(2), s.state())
    assert d.window == (
        WindowChange(field="max_tokens", old=None, new=100),
        WindowChange(field="model", old=None, new="gpt-4"),
    )
    assert d.summaries_added == ("s1",)
    assert d.deleted == (False, True)
    back = diff(s.state(), s.state(2))
    assert back.summaries_removed == ("s1",)
    assert back.deleted == (True, False)


def test_fork_against_its_parent() -> None:
    parent = Stream("p").add(created(team="x"), msg("m1", "a"), msg("m2", "b"))  # v3
    fork = Stream("f").add(ContextForked(parent_id="p", parent_version=3, metadata={"fork": 1}))
    fork.add(msg("f1", "fork only"), MessageEdited(message_id="m1", content="A"))
    parent.add(msg("p3", "parent only"), MessageRedacted(message_id="m2"))
    resolve = resolver(parent, fork)
    d = diff(parent.state(), fork.state(resolve=resolve))
    assert (d.from_context, d.to_context) == ("p", "f")
    assert d.added == ("f1",)
    assert d.removed == ("p3",)
    assert d.edited == ("m1", "m2")  # m1 edited in the fork; m2 redacted only in the parent
    assert d.redacted == ()
    assert d.metadata == (MetadataChange(path="/fork", kind="added", new=1),)
    # Against the parent at the fork point, only the fork's own changes show.
    d = diff(parent.state(3), fork.state(resolve=resolve))
    assert d.added == ("f1",)
    assert d.edited == ("m1",)
    assert d.removed == ()

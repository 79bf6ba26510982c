"""The pure fold: every event type, rollback, forks, lenient replay, validation, merge patch."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.events import (
    ContextDeleted,
    ContextForked,
    ContextRolledBack,
    Event,
    ImagePart,
    MessageEdited,
    MessageRedacted,
    MetadataUpdated,
    Part,
    SummaryAdded,
    TextPart,
    ToolCallPart,
    WindowConfigured,
    WindowServed,
    WindowSettings,
)
from projections import (
    ContextExists,
    ContextIsDeleted,
    ContextNotFound,
    ContextState,
    DuplicateMessage,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    MissingHistory,
    ParentRef,
    evolve,
    fold,
    merge_patch,
    validate,
)
from tests.support.factories import COUNTER, T0, Stream, created, msg, resolver


def content_of(state: ContextState) -> ContextState:
    """The state with what a rollback does not restore (versions, updated_at) blanked."""
    return msgspec.structs.replace(state, version=0, content_version=0, updated_at=T0)


def texts(state: ContextState) -> list[Any]:
    return [m.content for m in state.messages]


# -- single events -------------------------------------------------------------------------


def test_created_sets_identity_metadata_window_and_times() -> None:
    window = WindowSettings(max_tokens=1000, model="gpt-4")
    s = Stream("c1", tenant="acme").add(msgspec.structs.replace(created(a=1), window=window))
    state = s.state()
    assert (state.context_id, state.version, state.tenant) == ("c1", 1, "acme")
    assert state.metadata == {"a": 1}
    assert state.window == window
    assert state.created_at == state.updated_at == s.events[0].recorded_at
    assert state.token_encoding == "cl100k_base"
    assert state.messages == ()
    assert not state.deleted
    assert state.parent is None


def test_updated_by_is_the_actor_the_latest_event_names() -> None:
    s = Stream().add(created(), actor="ann")
    assert s.state().updated_by == "ann"
    s.add(msg("m1", "hi"), actor="bob")
    assert s.state().updated_by == "bob"
    s.add(WindowServed(policy="tokens", max_tokens=100, encoding="cl100k_base"), actor="model")
    assert s.state().updated_by == "model"  # like updated_at: the latest event, a record too
    s.add(ContextRolledBack(to_version=1), actor="cat")
    assert s.state().updated_by == "cat"  # a rollback is a change of its own, not restored
    s.add(msg("m2", "anyone?"), actor=None)
    assert s.state().updated_by is None
    fork = Stream("f1").add(ContextForked(parent_id="ctx", parent_version=2), actor="dan")
    assert fork.state(resolve=resolver(s)).updated_by == "dan"
    assert s.state(version=2).updated_by == "bob"


def test_append_counts_tokens_once_and_keeps_order() -> None:
    parts: list[Part] = [
        TextPart(text="look at this"), ImagePart(url="http://x/y.png", detail="low")
    ]
    s = Stream().add(created(), msg("m1", "Hello there", "user", name="ann"))
    s.add(msg("m2", parts, "assistant"))
    state = s.state()
    m1, m2 = state.messages
    assert (m1.message_id, m1.role, m1.name, m1.version) == ("m1", "user", "ann", 2)
    assert m1.tokens == COUNTER.count_message("user", "Hello there", "ann")
    assert m2.content == parts
    assert m2.version == 3
    assert m2.tokens == COUNTER.count_message("assistant", parts) > 85
    assert state.version == 3
    assert state.updated_at == s.events[-1].recorded_at
    assert state.message("m2") is m2
    assert state.index == {"m1": 0, "m2": 1}


def test_edit_replaces_content_and_recounts() -> None:
    s = Stream().add(
        created(),
        msg("m1", "short"),
        MessageEdited(message_id="m1", content="a much longer text now"),
    )
    m = s.state().messages[0]
    assert m.content == "a much longer text now"
    assert m.tokens == COUNTER.count_message("user", "a much longer text now")
    assert m.edited_version == 3
    assert m.version == 2
    assert s.state(2).messages[0].content == "short"  # history keeps the old content


def test_redaction_blanks_content_keeps_place_and_hash() -> None:
    secret: list[Part] = [TextPart(text="my card is 4111 1111"), ToolCallPart(id="c", name="pay")]
    s = Stream().add(created(), msg("m1", "hi"), msg("m2", secret), msg("m3", "bye"))
    s.add(MessageRedacted(message_id="m2", reason="pii"))
    state = s.state()
    m2 = state.messages[1]
    assert [m.message_id for m in state.messages] == ["m1", "m2", "m3"]
    assert m2.redacted
    # The text and the call's arguments are gone; which tool call it was stays, so that the
    # call and its result still pair up in a window (``redacted_content``).
    assert m2.content == [ToolCallPart(id="c", name="pay")]
    assert m2.tokens == COUNTER.count_message("user", [ToolCallPart(id="c", name="pay")])
    expected = hashlib.sha256(msgspec.json.encode(secret, order="sorted")).hexdigest()
    assert m2.content_hash == expected
    # Redacting again keeps the hash of the original, not of the blank.
    s.add(MessageRedacted(message_id="m2"))
    assert s.state().messages[1].content_hash == expected


def test_metadata_update_applies_merge_patch() -> None:
    s = Stream().add(
        created(a=1, b={"c": 2, "d": 3}),
        MetadataUpdated(patch={"a": None, "b": {"c": 5}, "e": [1]}),
    )
    assert s.state().metadata == {"b": {"c": 5, "d": 3}, "e": [1]}
    assert s.state(1).metadata == {"a": 1, "b": {"c": 2, "d": 3}}


def test_window_configured_replaces_settings() -> None:
    first = WindowSettings(max_tokens=100, model="gpt-4")
    second = WindowSettings(policy="last_n", last_n=5)
    s = Stream().add(created(), WindowConfigured(window=first), WindowConfigured(window=second))
    assert s.state(2).window == first
    assert s.state().window == second


def test_summary_is_recorded_and_messages_stay() -> None:
    s = Stream().add(created(), msg("m1", "a"), msg("m2", "b"))
    s.add(SummaryAdded(summary_id="s1", text="they said a and b", through_message_id="m2"))
    state = s.state()
    assert [m.message_id for m in state.messages] == ["m1", "m2"]
    (summary,) = state.summaries
    assert (summary.summary_id, summary.through_message_id, summary.version) == ("s1", "m2", 4)
    assert summary.tokens == COUNTER.count_message("system", "they said a and b")
    assert state.latest_summary == summary


def test_delete_is_a_tombstone_and_window_served_only_moves_version() -> None:
    s = Stream().add(created(), msg("m1", "a"))
    s.add(WindowServed(policy="tokens", max_tokens=10, encoding="cl100k_base"))
    assert content_of(s.state()) == content_of(s.state(2))
    assert s.state().version == 3
    s.add(ContextDeleted(reason="gdpr"))
    assert s.state().deleted
    assert texts(s.state()) == ["a"]


# -- rollback -------------------------------------------------------------------------------


def test_rollback_restores_everything_but_version_counts_on() -> None:
    s = Stream().add(created(a=1), msg("m1", "one"))  # v2
    s.add(msg("m2", "two"), MetadataUpdated(patch={"a": 2}))  # v3, v4
    s.add(WindowConfigured(window=WindowSettings(max_tokens=9)))  # v5
    s.add(SummaryAdded(summary_id="s", text="sum", through_message_id="m2"))  # v6
    s.add(ContextRolledBack(to_version=2))  # v7
    state = s.state()
    assert state.version == 7
    assert state.updated_at == s.events[-1].recorded_at
    assert content_of(state) == content_of(s.state(2))
    assert texts(state) == ["one"]
    assert state.metadata == {"a": 1}
    assert state.summaries == ()


def test_rollback_of_a_rollback_forward_and_backward() -> None:
    s = Stream().add(created(), msg("m1", "one"), msg("m2", "two"))  # v1..v3
    s.add(ContextRolledBack(to_version=2))  # v4: [one]
    s.add(msg("m3", "three"))  # v5: [one, three]
    # Undo the rollback: back to v3, the state before it.
    s.add(ContextRolledBack(to_version=3))  # v6: [one, two]
    assert texts(s.state()) == ["one", "two"]
    # Back to v5: a state that was built on a rolled-back one.
    s.add(ContextRolledBack(to_version=5))  # v7: [one, three]
    assert texts(s.state()) == ["one", "three"]
    # To v4, itself a rollback's result.
    s.add(ContextRolledBack(to_version=4))  # v8: [one]
    assert texts(s.state()) == ["one"]
    assert s.state().version == 8


def test_rollback_past_an_edit_restores_the_old_content() -> None:
    s = Stream().add(
        created(), msg("m1", "original"), MessageEdited(message_id="m1", content="edited!")
    )
    s.add(ContextRolledBack(to_version=2))
    m = s.state().messages[0]
    assert m.content == "original"
    assert m.edited_version is None
    assert m.tokens == COUNTER.count_message("user", "original")


def test_rollback_to_after_a_redaction_keeps_it_blank() -> None:
    s = Stream().add(created(), msg("m1", "secret"), MessageRedacted(message_id="m1"))  # v3
    s.add(msg("m2", "later"), ContextRolledBack(to_version=3))
    assert texts(s.state()) == [""]
    assert s.state().messages[0].redacted
    # ... and past the redaction brings the content back (that is what a rollback means).
    s.add(ContextRolledBack(to_version=2))
    assert texts(s.state()) == ["secret"]
    assert not s.state().messages[0].redacted


def test_rollback_undoes_a_delete() -> None:
    s = Stream().add(created(), msg("m1", "a"), ContextDeleted(), ContextRolledBack(to_version=2))
    assert not s.state().deleted


def test_fold_on_a_base_needs_resolve_for_older_rollback_targets() -> None:
    s = Stream().add(created(), msg("m1", "a"), msg("m2", "b"), msg("m3", "c"))
    s.add(ContextRolledBack(to_version=2))
    base = s.state(4)
    with pytest.raises(MissingHistory):
        fold(s.events[4:], counter=COUNTER, base=base)
    state = fold(s.events[4:], counter=COUNTER, base=base, resolve=resolver(s))
    assert state == s.state()
    assert texts(state) == ["a"]


def test_rollback_to_the_base_version_needs_no_resolver() -> None:
    s = Stream().add(created(), msg("m1", "a"), msg("m2", "b"), ContextRolledBack(to_version=3))
    assert fold(s.events[3:], counter=COUNTER, base=s.state(3)) == s.state()


# -- forks ----------------------------------------------------------------------------------


def test_fork_starts_as_parent_at_version_and_ignores_parent_moving_on() -> None:
    parent = Stream("p").add(created(team="x", keep=1), msg("m1", "a"), msg("m2", "b"))
    fork = Stream("f", tenant="other").add(
        ContextForked(parent_id="p", parent_version=2, metadata={"keep": None, "fork": True})
    )
    fork.add(msg("f1", "fork's own"))
    parent.add(msg("m3", "parent's later"), MessageEdited(message_id="m1", content="changed"))
    state = fork.state(resolve=resolver(parent))
    assert texts(state) == ["a", "fork's own"]
    assert state.messages[0] is not None
    assert state.messages[0].version == 2
    assert (state.context_id, state.version, state.tenant) == ("f", 2, "other")
    assert state.parent == ParentRef("p", 2)
    assert state.metadata == {"team": "x", "fork": True}
    assert state.created_at == fork.events[0].recorded_at


def test_fork_of_a_fork_resolves_recursively() -> None:
    root = Stream("r").add(created(), msg("m1", "a"), msg("m2", "b"))
    mid = Stream("m").add(ContextForked(parent_id="r", parent_version=3), msg("x", "mid"))
    leaf = Stream("l").add(ContextForked(parent_id="m", parent_version=2), msg("y", "leaf"))
    state = leaf.state(resolve=resolver(root, mid, leaf))
    assert texts(state) == ["a", "b", "mid", "leaf"]
    assert state.parent == ParentRef("m", 2)
    assert state.version == 2


def test_fork_needs_a_resolver() -> None:
    fork = Stream("f").add(ContextForked(parent_id="p", parent_version=1))
    with pytest.raises(MissingHistory):
        fork.state()


def test_rollback_in_a_fork_to_version_one_is_the_inherited_state() -> None:
    parent = Stream("p").add(created(), msg("m1", "a"))
    fork = Stream("f").add(ContextForked(parent_id="p", parent_version=2), msg("f1", "b"))
    fork.add(ContextRolledBack(to_version=1))
    assert texts(fork.state(resolve=resolver(parent))) == ["a"]


def test_inherited_state_in_another_encoding_is_recounted() -> None:
    parent = Stream("p").add(created(), msg("m1", "some words here"))
    stale = msgspec.structs.replace(
        parent.state(),
        token_encoding="old",
        messages=tuple(msgspec.structs.replace(m, tokens=0) for m in parent.state().messages),
    )
    fork = Stream("f").add(ContextForked(parent_id="p", parent_version=2))
    state = fork.state(resolve=lambda _id, _v: stale)
    assert state.token_encoding == "cl100k_base"
    assert state.messages[0].tokens == COUNTER.count_message("user", "some words here")


# -- lenient replay and version checks -------------------------------------------------------


def test_fold_is_lenient_with_stored_nonsense() -> None:
    s = Stream().add(created(), msg("m1", "a"), msg("m1", "duplicate"))
    s.add(MessageEdited(message_id="nope", content="x"), MessageRedacted(message_id="nope"))
    s.add(ContextRolledBack(to_version=99), ContextRolledBack(to_version=0), created())
    s.add(SummaryAdded(summary_id="s", text="t", through_message_id="nope"))
    state = s.state()
    assert texts(state) == ["a"]
    assert state.version == 9
    assert len(state.summaries) == 1
    assert state.latest_summary is None


def test_events_after_delete_are_still_applied() -> None:
    s = Stream().add(created(), ContextDeleted(), msg("m1", "after"))
    assert s.state().deleted
    assert texts(s.state()) == ["after"]


def test_edit_of_a_redacted_message_changes_nothing() -> None:
    s = Stream().add(created(), msg("m1", "a"), MessageRedacted(message_id="m1"))
    s.add(MessageEdited(message_id="m1", content="back"))
    assert texts(s.state()) == [""]


def test_fold_rejects_version_gaps_and_other_streams() -> None:
    s = Stream().add(created(), msg("m1", "a"), msg("m2", "b"))
    with pytest.raises(MissingHistory):
        fold([s.events[0], s.events[2]], counter=COUNTER)
    with pytest.raises(MissingHistory):
        fold(s.events[1:], counter=COUNTER)
    with pytest.raises(MissingHistory):
        fold(
            Stream("other").add(created(), msg("x", "y")).events[1:],
            counter=COUNTER,
            base=s.state(1),
        )
    with pytest.raises(ValueError, match="needs events"):
        fold([], counter=COUNTER)


def test_stream_without_creation_starts_empty() -> None:
    s = Stream().add(msg("m1", "a"))
    assert texts(s.state()) == ["a"]
    assert s.state().version == 1


# -- fold vs evolve vs snapshots -------------------------------------------------------------

_ids = st.sampled_from(["m1", "m2", "m3", "m4"])
_event: st.SearchStrategy[Event] = st.one_of(
    st.builds(msg, _ids, st.text(max_size=12)),
    st.builds(MessageEdited, message_id=_ids, content=st.text(max_size=12)),
    st.builds(MessageRedacted, message_id=_ids),
    st.builds(
        MetadataUpdated,
        patch=st.dictionaries(st.sampled_from("abc"), st.none() | st.integers(0, 3)),
    ),
    st.builds(SummaryAdded, summary_id=st.just("s"), text=st.just("sum"), through_message_id=_ids),
    st.builds(ContextRolledBack, to_version=st.integers(0, 12)),
    st.builds(ContextDeleted),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=12), st.integers(1, 12))
def test_fold_equals_stepwise_evolve_and_snapshot_resume(events: list[Event], cut: int) -> None:
    s = Stream().add(created(), *events)
    full = s.state()
    resolve = resolver(s)
    stepped: ContextState | None = None
    for rec in s.events:
        stepped = evolve(stepped, rec, counter=COUNTER, resolve=resolve)
    assert stepped == full
    cut = min(cut, len(s.events))
    resumed = (
        fold(s.events[cut:], counter=COUNTER, base=s.state(cut), resolve=resolve)
        if cut < len(s.events)
        else s.state(cut)
    )
    assert resumed == full


# -- validate -------------------------------------------------------------------------------


def test_validate_rejects_bad_commands_with_typed_errors() -> None:
    s = Stream().add(created(), msg("m1", "a"), MessageRedacted(message_id="m1"), msg("m2", "b"))
    state = s.state()
    cases: list[tuple[Event, type[Exception]]] = [
        (created(), ContextExists),
        (ContextForked(parent_id="x", parent_version=1), ContextExists),
        (msg("m2", "again"), DuplicateMessage),
        (MessageEdited(message_id="zz", content="x"), MessageNotFound),
        (MessageEdited(message_id="m1", content="x"), InvalidCommand),
        (MessageRedacted(message_id="zz"), MessageNotFound),
        (SummaryAdded(summary_id="s", text="t", through_message_id="zz"), MessageNotFound),
        (ContextRolledBack(to_version=0), InvalidVersion),
        (ContextRolledBack(to_version=5), InvalidVersion),
        (WindowConfigured(window=WindowSettings(max_tokens=0)), InvalidCommand),
        (WindowConfigured(window=WindowSettings(policy="last_n")), InvalidCommand),
    ]
    for event, error in cases:
        with pytest.raises(error):
            validate(state, event, context_id="ctx")
    for ok in (
        msg("m3", "c"),
        MessageEdited(message_id="m2", content="x"),
        ContextRolledBack(to_version=4),
    ):
        validate(state, ok, context_id="ctx")


def test_validate_new_and_deleted_contexts_and_forks() -> None:
    with pytest.raises(ContextNotFound):
        validate(None, msg("m1", "a"), context_id="ctx")
    validate(None, created(), context_id="ctx")
    gone = Stream().add(created(), ContextDeleted()).state()
    with pytest.raises(ContextIsDeleted):
        validate(gone, msg("m1", "a"), context_id="ctx")
    fork = ContextForked(parent_id="p", parent_version=3)
    with pytest.raises(ContextNotFound):
        validate(None, fork, context_id="f")
    with pytest.raises(ContextIsDeleted):
        validate(None, fork, context_id="f", parent=gone)
    parent = Stream("p").add(created(), msg("m1", "a")).state()
    with pytest.raises(InvalidVersion):
        validate(None, fork, context_id="f", parent=parent)
    validate(None, ContextForked(parent_id="p", parent_version=2), context_id="f", parent=parent)


# -- merge patch ------------------------------------------------------------------------------

RFC7386_APPENDIX_A = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_APPENDIX_A)
def test_merge_patch_rfc7386_appendix_a(target: str, patch: str, result: str) -> None:
    t, p = json.loads(target), json.loads(patch)
    t_before, p_before = copy.deepcopy(t), copy.deepcopy(p)
    assert merge_patch(t, p) == json.loads(result)
    assert (t, p) == (t_before, p_before)  # neither input is modified


def test_merge_patch_rfc7386_section_3_example() -> None:
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }

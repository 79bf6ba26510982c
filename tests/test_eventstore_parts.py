"""The content parts the provider formats need: rows written before they existed still decode
(and encode to the same bytes), the new parts and fields are sealed with the content, and
nothing unset is written."""

from __future__ import annotations

import msgspec

from eventstore import sealing
from eventstore.codec import encoder, event_decoder
from eventstore.events import (
    FilePart,
    ImagePart,
    MessageAppended,
    OpaquePart,
    Part,
    RefusalPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

# Exactly the bytes the log held for these events before the new parts and fields existed
# (encoded by the previous events.py; every field of every part written out).
OLD_ROWS = [
    b'{"type":"message.appended","message_id":"m1","role":"system","content":"Be terse.",'
    b'"name":null,"metadata":{},"sealed":null}',
    b'{"type":"message.appended","message_id":"m2","role":"user","content":[{"type":"text",'
    b'"text":"look"},{"type":"image","url":"https://x/y.png","data":null,"media_type":null,'
    b'"detail":"low"},{"type":"file","file_id":"f1","uri":null,"name":"a.pdf",'
    b'"media_type":"application/pdf"}],"name":"ada","metadata":{},"sealed":null}',
    b'{"type":"message.appended","message_id":"m3","role":"assistant","content":[{"type":'
    b'"tool_call","id":"c1","name":"pay","arguments":{"amount":3}}],"name":null,'
    b'"metadata":{},"sealed":null}',
    b'{"type":"message.appended","message_id":"m4","role":"tool","content":[{"type":'
    b'"tool_result","call_id":"c1","content":[{"type":"text","text":"ok"}],"is_error":false}],'
    b'"name":null,"metadata":{},"sealed":null}',
]


def test_rows_written_before_the_new_parts_still_decode_to_the_same_bytes() -> None:
    for row in OLD_ROWS:
        event = event_decoder.decode(row)
        assert isinstance(event, MessageAppended)
        # Unset new fields are left out: an old message encodes as it always did, so its
        # content hash (redaction) and window hashes do not change.
        assert encoder.encode(event) == row
    m2 = event_decoder.decode(OLD_ROWS[1])
    assert isinstance(m2, MessageAppended)
    assert isinstance(m2.content, list)
    image = m2.content[1]
    assert isinstance(image, ImagePart)
    assert image.detail == "low"
    assert image.file_id is msgspec.UNSET
    assert image.extra is msgspec.UNSET


def test_new_parts_and_fields_round_trip_through_the_codec() -> None:
    content: list[Part] = [
        TextPart(text="hi", extra={"anthropic": {"cache_control": {"type": "ephemeral"}}}),
        ImagePart(file_id="file_1", detail="original"),
        FilePart(name="notes.txt", media_type="text/plain", text="plain notes"),
        FilePart(name="a.pdf", media_type="application/pdf", data="JVBERi0="),
        ToolCallPart(id="c", name="f", arguments={}, arguments_json="{not json"),
        RefusalPart(text="I can't help with that."),
        OpaquePart(
            format="anthropic", data={"type": "thinking", "thinking": "hm", "signature": "s"}
        ),
    ]
    event = MessageAppended(message_id="m", role="developer", content=content)
    assert event_decoder.decode(encoder.encode(event)) == event


def test_sealing_covers_every_new_content_field() -> None:
    secrets = ["sekrit-args", "sekrit-thought", "sekrit-refusal", "sekrit-extra", "sekrit-doc"]
    content: list[Part] = [
        ToolCallPart(id="c", name="f", arguments_json='{"x": "sekrit-args"}'),
        OpaquePart(format="responses", data={"type": "reasoning", "summary": [
            {"type": "summary_text", "text": "sekrit-thought"}]}),
        RefusalPart(text="sekrit-refusal"),
        ToolResultPart(call_id="c", content="r", extra={"anthropic": {"x": "sekrit-extra"}}),
        FilePart(text="sekrit-doc"),
    ]  # fmt: skip
    event = MessageAppended(message_id="m", role="assistant", content=content)
    key_id, key = sealing.new_key()
    sealed = sealing.seal(event, "event-1", [("ada", key_id, key)])
    stored = encoder.encode(sealed)
    for secret in secrets:
        assert secret.encode() not in stored
    assert sealing.unseal(event_decoder.decode(stored), "event-1", {key_id: key}) == event
    erased = sealing.unseal(event_decoder.decode(stored), "event-1", {key_id: None})
    assert isinstance(erased, MessageAppended)
    assert erased.content == sealing.ERASED

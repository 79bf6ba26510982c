"""The one encoder and decoders the event store uses (msgspec: reuse is its first perf rule)."""

from __future__ import annotations

import msgspec

from .events import Event, EventMetadata

encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)
metadata_decoder = msgspec.json.Decoder(EventMetadata)

EMPTY_METADATA = encoder.encode(EventMetadata())

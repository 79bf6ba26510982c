"""Reading Server-Sent Events (the WHATWG event-stream format) line by line, without IO: both
clients feed it the lines they read, and it hands back each complete event with the id to
resume from (``Last-Event-ID``) after a dropped connection."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from api.rest.schemas import EventOut

_event_decoder = msgspec.json.Decoder(EventOut)


@dataclass
class Message:
    """One dispatched event: its type, id (a log position) and data."""

    event: str
    id: str | None
    data: str


@dataclass
class Reader:
    """Gathers fields until a blank line; ``last_id`` is the id to resume from, which an
    ``id:`` line sets even in a block without data (the server's first block says where
    the stream starts)."""

    last_id: str | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    def feed(self, line: str) -> Message | None:
        """Take one line (without its end of line); the event it completes, if any."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = Message(self._event or "message", self.last_id, "\n".join(self._data))
            self._data, self._event = [], ""
            return message
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_id = value
        return None


def decode_event(message: Message) -> EventOut:
    """The ``EventOut`` an event's data holds."""
    return _event_decoder.decode(message.data)

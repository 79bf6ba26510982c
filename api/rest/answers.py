"""Window answers kept encoded, beside the windows they encode.

The contexts service keeps windows by the version they were computed at (``WindowCache``), so
a repeated read of an unchanged context gets the same ``Window`` object back; encoding it
again cost about 7 us of a ~80 us window read (a 50-message window of 5 KB). Here its JSON is
kept with it: an answer is reused only for that very object (keyed by its id, which the
entry keeps alive), so it is exactly what encoding the window would give; a window computed
again is another object, and an erasure or a rebuild empties it all.
"""

from __future__ import annotations

from projections import Window
from projections.caches import SizedLRU

from . import render, wire

MAX_ANSWER_BYTES = 1 << 20
"""Answers larger than this (a window with no budget over a long context) are not kept: the
service's cache already holds the window itself, and encoding is then a small part of the
answer's cost."""

_Key = tuple[int, str | None]
"""(id of the Window, format) of an answer; the entry holds the Window, so the id stays its."""


class WindowAnswers(SizedLRU[_Key, tuple[Window, bytes]]):
    """Encoded window answers by the Window object and format they were encoded from,
    bounded by their bytes (the least recently used go first).

    ``generation`` moves on at each ``clear`` (registered with ``Contexts.on_forget``: an
    erasure or a rebuild), and an answer encoded from a window read before it is not kept.
    """

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        super().__init__(max_bytes, lambda entry: len(entry[1]))

    def encoded(self, window: Window, fmt: str | None, generation: int) -> bytes:
        """The answer's JSON for ``window`` in request format ``fmt`` (None: native)."""
        key = (id(window), fmt)
        found = self.get(key)
        if found is not None:  # the entry holds its window: no other has that id meanwhile
            return found[1]
        body = wire.encode(render.window_body(window, fmt))
        if len(body) <= MAX_ANSWER_BYTES:
            self.put(key, (window, body), generation)
        return body

"""The one rule by which a write's precondition holds: If-Match and ``expected_version`` over
REST, the ``expected_version`` argument of an MCP tool, a WebSocket command's — every door
hands its number to the service, and the service asks ``admits`` here.

A context has two versions. ``version`` counts every event of its stream; ``content_version``
is the version of its latest event that is not a ``window.served`` record. A precondition N
holds when ``content_version <= N <= version``: nothing but records of served windows was
written since the caller read version N. The write then goes on at the current ``version``.

Why: the chat loop (append the user's message, serve the window and record it, append the
reply with If-Match set to the window's ETag) must not conflict with its own record. The
window's ETag stays the stream version it was computed at, so ``?at_version=`` of that ETag
is exactly what the model saw, and every event (records included) stays in the one stream:
history, ``ctxlog audit --served``, ``ctxlog verify`` and the hash chain are unchanged. The
alternatives cost more: records in a companion stream would leave a context's history
without what its models were shown and need a second chain of their own; ETags that count
content changes only would make ``at_version`` ambiguous (one ETag, several stream versions).
A record can never make a write wrong: it changes nothing a write validates against.
"""

from __future__ import annotations

from eventstore.events import Event, WindowServed


def changes_content(event: Event) -> bool:
    """Whether ``event`` moves a context's ``content_version``: all but window.served records."""
    return not isinstance(event, WindowServed)


def admits(expected: int, *, content_version: int, version: int) -> bool:
    """Whether a write that expects ``expected`` may go on against a context at ``version``
    whose content last changed at ``content_version``."""
    return content_version <= expected <= version

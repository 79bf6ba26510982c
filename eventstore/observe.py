"""What the store tells whoever watches it (metrics, traces), without knowing who that is.

The writer calls ``committed`` once per group commit, after the callers' futures are
resolved; the store calls ``erased`` when it destroys a subject's keys. The default observer
does nothing: the API plugs in one that feeds Prometheus and OpenTelemetry (``api/metrics.py``),
so this package imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence


class StoreObserver:
    """Subclass and override what you need; every call is on the event loop's thread and must
    be cheap (it runs once per transaction, on the write path)."""

    def committed(
        self,
        appends: int,
        events: int,
        nbytes: int,
        started_ns: int,
        seconds: float,
        sync_seconds: float | None,
    ) -> None:
        """A group commit stored ``events`` events (``nbytes`` of payload and metadata) for
        ``appends`` appends (replays and refusals not counted), starting at ``started_ns``
        (Unix time) and taking ``seconds``; ``sync_seconds`` is the COMMIT itself (mostly the
        fsync) when the backend measures it."""

    def erased(self, keys: int) -> None:
        """A subject's erasure destroyed ``keys`` keys (0: already erased, or unknown)."""


class Observers(StoreObserver):
    """Several observers, each told everything in turn."""

    def __init__(self, observers: Sequence[StoreObserver]) -> None:
        self.observers = list(observers)

    def committed(
        self,
        appends: int,
        events: int,
        nbytes: int,
        started_ns: int,
        seconds: float,
        sync_seconds: float | None,
    ) -> None:
        """Each observer's ``committed``."""
        for observer in self.observers:
            observer.committed(appends, events, nbytes, started_ns, seconds, sync_seconds)

    def erased(self, keys: int) -> None:
        """Each observer's ``erased``."""
        for observer in self.observers:
            observer.erased(keys)


NO_OBSERVER = StoreObserver()
"""The observer of a store nobody watches."""

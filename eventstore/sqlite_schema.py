"""The SQLite log's schema and statements (SQL in constants, values always bound)."""

from __future__ import annotations

SCHEMA_VERSION = 1
"""Kept in ``PRAGMA user_version``; a database with a higher number is refused."""

# position is the rowid: the global log is read by position far more than anything else.
# (stream_id, version) is unique, so optimistic concurrency is enforced by the table itself.
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    metadata    BLOB    NOT NULL,
    tenant      TEXT,
    actor       TEXT,
    recorded_at INTEGER NOT NULL,
    hash        BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);
-- One entry per stream (its first event): listing streams never scans the log.
CREATE INDEX IF NOT EXISTS events_stream_starts ON events (position) WHERE version = 1;
CREATE INDEX IF NOT EXISTS events_tenant_stream_starts
    ON events (tenant, position) WHERE version = 1;
-- The log is append-only; the hash chain catches whoever drops these triggers first.
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
"""

COLUMNS = (
    "position, stream_id, version, event_id, type, data, metadata, tenant, actor, recorded_at, hash"
)
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_HEAD = "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1"
SELECT_BY_IDS = f"SELECT {COLUMNS} FROM events WHERE event_id IN ({{marks}})"
SELECT_STREAM_VERSION = "SELECT max(version) FROM events WHERE stream_id = ?"
# A range (recorder.prefix_range) of the (stream_id, version) index: BINARY collation
# compares UTF-8 bytes.
SELECT_STREAMS_STARTING = (
    "SELECT stream_id FROM events WHERE stream_id >= ? AND stream_id < ? AND version = 1"
    " ORDER BY stream_id LIMIT ?"
)
SELECT_STREAM_FORWARD = (
    f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT ?"
)
SELECT_STREAM_BACKWARD = (
    f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version <= ?"
    " ORDER BY version DESC LIMIT ?"
)
SELECT_RECORDED_AT = "SELECT recorded_at FROM events WHERE position = ?"
SELECT_STREAM_RECORDED_AT = "SELECT recorded_at FROM events WHERE stream_id = ? AND version = ?"
SELECT_ALL = f"SELECT {COLUMNS} FROM events WHERE position > ? AND position <= ?"
FILTER_TYPES = " AND type IN ({marks})"
FILTER_STREAM = " AND stream_id = ?"
FILTER_TENANT = " AND tenant = ?"
FILTER_ACTOR = " AND actor = ?"
ORDER_BY_POSITION = " ORDER BY position LIMIT ?"
SELECT_STREAMS = (
    "SELECT stream_id, position, tenant, recorded_at FROM events"
    " INDEXED BY events_stream_starts WHERE version = 1"
)
SELECT_TENANT_STREAMS = (
    "SELECT stream_id, position, tenant, recorded_at FROM events"
    " INDEXED BY events_tenant_stream_starts WHERE version = 1 AND tenant = ?"
)
# NULLs sort first in the index: one seek past them finds a tenant's stream, or none.
SELECT_ANY_TENANT = (
    "SELECT 1 FROM events INDEXED BY events_tenant_stream_starts"
    " WHERE version = 1 AND tenant IS NOT NULL LIMIT 1"
)

MAX_VARIABLES = 500
"""Bound parameters per statement, under SQLite's default limit."""

"""The log holds subject keys and plaintext: the files the event store creates (the log, its
write-ahead log and shared-memory index, backups and their journals) are owner-only (0600)
whatever the process's umask, so library use is as safe as the ``ctxlog`` command. A file the
operator made keeps the mode the operator gave it."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from eventstore import ContextCreated, EventMetadata, EventStore, MessageAppended
from eventstore.backup import backup_sqlite
from tests.conftest import owner_only

pytestmark = pytest.mark.usefixtures("permissive_umask")


async def _write(store: EventStore) -> None:
    meta = EventMetadata(tenant="acme")
    text = MessageAppended(message_id=str(uuid.uuid4()), role="user", content="secret")
    await store.append("s", [ContextCreated(), text], metadata=meta, subject="user-1")


async def test_a_new_log_its_wal_and_index_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    async with await EventStore.open_sqlite(str(db)) as store:
        await _write(store)
        made = set(os.listdir(tmp_path))
        assert {"log.db", "log.db-wal", "log.db-shm"} <= made
        assert owner_only(tmp_path) == {}
    assert owner_only(tmp_path) == {}


async def test_a_backup_is_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    async with await EventStore.open_sqlite(str(db)) as store:
        await _write(store)
        await backup_sqlite(str(db), str(tmp_path / "copy.db"))
    assert (tmp_path / "copy.db").exists()
    assert owner_only(tmp_path) == {}


async def test_a_file_the_operator_made_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    db.touch()
    os.chmod(db, 0o640)  # shared with a backup group, say: not ctxlog's call to make
    async with await EventStore.open_sqlite(str(db)) as store:
        await _write(store)
    assert stat.S_IMODE(db.stat().st_mode) == 0o640

"""Acknowledged appends survive kill -9: a writer process is killed at random moments."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from eventstore import EventStore

ROOT = Path(__file__).resolve().parent.parent


def run_and_kill(db: Path, acks: Path, cycle: int) -> None:
    before = acks.stat().st_size if acks.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.crash_writer", str(db), str(acks), str(cycle)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    # Wait until it is really writing, then kill it at a random moment.
    while (not acks.exists() or acks.stat().st_size == before) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.01)
    time.sleep(random.uniform(0.05, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    assert acks.stat().st_size > before, "the writer acknowledged nothing before the deadline"


async def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    db, acks = tmp_path / "log.db", tmp_path / "acks.txt"
    for cycle in range(3):
        run_and_kill(db, acks, cycle)

        # A line is written only after its append was acknowledged; a line torn by the kill
        # still names acknowledged ids, except for a cut-off last id.
        acknowledged = [event_id for event_id in acks.read_text().split() if len(event_id) == 36]
        async with await EventStore.open_sqlite(str(db)) as store:
            stored: collections.Counter[str] = collections.Counter()
            versions: dict[str, list[int]] = collections.defaultdict(list)
            positions: list[int] = []
            after = 0
            while True:
                events, after = await store.read_all(after, 10_000)
                for event in events:
                    stored[event.event_id] += 1
                    versions[event.stream_id].append(event.version)
                    positions.append(event.position)
                if len(events) < 10_000:
                    break
            assert acknowledged
            missing = [i for i in acknowledged if stored[i] != 1]
            assert not missing, f"{len(missing)} acknowledged events lost or duplicated"
            assert positions == list(range(1, len(positions) + 1))
            for stream_versions in versions.values():
                assert stream_versions == list(range(1, len(stream_versions) + 1))
            assert (await store.verify()).ok

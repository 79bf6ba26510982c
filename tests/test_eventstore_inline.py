"""Where group commits run: inline while COMMIT is fast, on the writer's thread while it is slow."""

from __future__ import annotations

import time

from eventstore.inline import CommitPlacement


class TimedConnection:
    """Stands in for the inline connection: a COMMIT that takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        time.sleep(self.delay)


def test_commits_stay_inline_while_commit_is_fast() -> None:
    placement = CommitPlacement(slow=0.05)
    fast = TimedConnection()
    for _ in range(20):
        assert placement.inline()
        placement.commit(fast)  # type: ignore[arg-type]
    assert fast.statements == ["COMMIT"] * 20


def test_slow_commits_move_to_the_thread_and_a_probe_brings_them_back() -> None:
    placement = CommitPlacement(slow=0.005, probe_every=3)
    slow, fast = TimedConnection(0.01), TimedConnection()
    for _ in range(50):  # the average crosses 5 ms after a handful of 10 ms commits
        if not placement.inline():
            break
        placement.commit(slow)  # type: ignore[arg-type]
    else:
        raise AssertionError("slow commits never left the loop's thread")
    assert [placement.inline() for _ in range(3)] == [False, False, True]  # then a probe
    placement.commit(fast)  # type: ignore[arg-type]
    assert placement.inline()  # the disk recovered: one fast probe is enough


def test_a_slow_probe_keeps_commits_on_the_thread() -> None:
    placement = CommitPlacement(slow=0.005, probe_every=2)
    slow = TimedConnection(0.01)
    while placement.inline():
        placement.commit(slow)  # type: ignore[arg-type]
    assert placement.inline() is False  # second threaded commit; the next one probes
    assert placement.inline()
    placement.commit(slow)  # type: ignore[arg-type]
    assert not placement.inline()


def test_a_checkpoint_is_due_once_every_n_inline_commits() -> None:
    placement = CommitPlacement(checkpoint_every=3)
    due = []
    for _ in range(7):
        placement.commit(TimedConnection())  # type: ignore[arg-type]
        due.append(placement.checkpoint_due())
    assert due == [False, False, True, False, False, True, False]

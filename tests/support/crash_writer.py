"""A writer process for the crash test: appends under load and logs each acknowledged append.

Usage: python -m tests.support.crash_writer DB ACK_FILE CYCLE. Each line of ACK_FILE is written only
after the append's await returned, so it lists appends the store acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from eventstore import EventStore, MessageAppended


async def main(db: str, ack_path: str, cycle: str) -> None:
    store = await EventStore.open_sqlite(db)
    # Blocking, line-buffered writes on purpose: a line is in the OS before the next append.
    with open(ack_path, "a", buffering=1) as acks:  # noqa: ASYNC230

        async def writer(n: int) -> None:
            stream = f"c{cycle}-w{n % 8}"
            while True:
                count = 1 + n % 3
                ids = [str(uuid.uuid4()) for _ in range(count)]
                events = [
                    MessageAppended(message_id=i, role="user", content="x" * 200) for i in ids
                ]
                result = await store.append(stream, events, event_ids=ids)
                acks.write(" ".join(ids) + "\n")
                assert result.version >= count

        await asyncio.gather(*(writer(n) for n in range(32)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

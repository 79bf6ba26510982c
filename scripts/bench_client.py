#!/usr/bin/env python3
"""What the Python client costs, and what the LangGraph checkpointer stores.

1. Appends/s and window reads/s through ``api.client.AsyncClient`` against raw aiohttp
   requests carrying the same bytes and headers, to the same ``ctxlog serve``, in the same run:
   ``--concurrency`` workers for ``--seconds`` per phase, ``--rounds`` rounds alternating which
   goes first; the ratio is the median of the rounds' ratios (aim: >= 0.9).
2. A LangGraph graph of ``--steps`` steps (a growing message list, a large document set once,
   a counter), run with ``CtxlogSaver`` and with langgraph-checkpoint-sqlite's ``SqliteSaver``:
   the bytes each stored for it (payload bytes of the rows, and the database file).

    .venv/bin/python scripts/bench_client.py [--seconds 5] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from api.client import AsyncClient  # noqa: E402
from api.client import schemas as s  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402

KEY = "key-alice"
Op = Callable[[], Awaitable[Any]]


async def rate(op: Op, workers: int, seconds: float) -> float:
    """Operations per second of ``workers`` closed loops of ``op`` for ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await op()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(workers)))
    return done / (time.perf_counter() - start)


async def compare(name: str, raw: Op, client: Op, args: argparse.Namespace) -> None:
    ratios, raws, clients = [], [], []
    for r in range(args.rounds):
        order = [("raw", raw), ("client", client)]
        if r % 2:
            order.reverse()
        got = {label: await rate(op, args.concurrency, args.seconds) for label, op in order}
        raws.append(got["raw"])
        clients.append(got["client"])
        ratios.append(got["client"] / got["raw"])
    print(
        f"{name:<28} raw aiohttp {statistics.median(raws):8.0f}/s   client "
        f"{statistics.median(clients):8.0f}/s   ratio {statistics.median(ratios):.3f} "
        f"(rounds {', '.join(f'{x:.3f}' for x in ratios)})"
    )


async def http_overhead(server: ServerProcess, args: argparse.Namespace) -> None:
    client = AsyncClient(server.url, api_key=KEY, connections=args.concurrency)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
    try:
        ctx = (await client.create_context()).id
        body = [s.MessageIn(role="user", content="How long is a piece of string?")]
        raw_body = s.AppendMessages(messages=body)
        url = f"{server.url}/api/v1/contexts/{ctx}/messages"
        encoded = __import__("msgspec").json.encode(raw_body)
        decoder = __import__("msgspec").json.Decoder(s.Appended)

        async def raw_append() -> None:
            headers = {
                "X-API-Key": KEY, "Content-Type": "application/json",
                "Prefer": "return=minimal", "Idempotency-Key": uuid.uuid4().hex,
            }  # fmt: skip
            async with session.post(url, data=encoded, headers=headers) as r:
                assert r.status == 201
                decoder.decode(await r.read())

        async def client_append() -> None:
            await client.append_messages(ctx, body)

        await compare("append (minimal answer)", raw_append, client_append, args)

        window_url = f"{server.url}/api/v1/contexts/{ctx}/window"
        window_decoder = __import__("msgspec").json.Decoder(s.Window)

        async def raw_window() -> None:
            async with session.get(
                window_url, params={"max_tokens": "500"}, headers={"X-API-Key": KEY}
            ) as r:
                assert r.status == 200
                window_decoder.decode(await r.read())

        async def client_window() -> None:
            await client.get_window(ctx, max_tokens=500)

        await compare("window read (500 tokens)", raw_window, client_window, args)
    finally:
        await client.aclose()
        await session.close()


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    document: str
    count: int


def build(saver: Any, steps: int) -> Any:
    from langgraph.graph import END, START, StateGraph

    def step(state: State) -> dict[str, Any]:
        n = state["count"] + 1
        return {"messages": [f"message {n}: " + "lorem ipsum " * 8], "count": n}

    def more(state: State) -> str:
        return "step" if state["count"] < steps else END

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", more)
    return builder.compile(checkpointer=saver)


def payload_bytes(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


async def checkpoint_sizes(tmp: Path, steps: int) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from api.client.langgraph import CtxlogSaver

    start = {"messages": [], "document": "a long document " * 2000, "count": 0}
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": steps * 2 + 10}

    db = tmp / "ctxlog.db"
    server = ServerProcess(db)
    await server.started()
    try:
        client = AsyncClient(server.url, api_key=KEY)
        try:
            began = time.perf_counter()
            out = await build(CtxlogSaver(client), steps).ainvoke(start, config)
            ctxlog_seconds = time.perf_counter() - began
            assert out["count"] == steps
        finally:
            await client.aclose()
    finally:
        server.stop()
    ctxlog_rows = payload_bytes(
        db, "SELECT sum(length(data) + length(metadata)) FROM events WHERE type LIKE 'checkpoint%'"
    )
    ctxlog_file = file_bytes(db)
    sqlite_db = tmp / "langgraph.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(sqlite_db)) as saver:
        began = time.perf_counter()
        out = await build(saver, steps).ainvoke(start, config)
        sqlite_seconds = time.perf_counter() - began
        assert out["count"] == steps
    sqlite_rows = payload_bytes(
        sqlite_db, "SELECT sum(length(checkpoint) + length(metadata)) FROM checkpoints"
    ) + payload_bytes(sqlite_db, "SELECT sum(length(value)) FROM writes")
    sqlite_file = file_bytes(sqlite_db)

    rows = [
        ("CtxlogSaver", ctxlog_rows, ctxlog_file, ctxlog_seconds),
        ("SqliteSaver", sqlite_rows, sqlite_file, sqlite_seconds),
    ]
    print(f"LangGraph graph of {steps} steps (a growing message list, a 32 KB document set once)")
    for name, payload, file, seconds in rows:
        print(f"  {name}  payload {payload:>12,} B   files {file:>12,} B   {seconds:.1f} s")
    print(
        f"  CtxlogSaver / SqliteSaver: payload {ctxlog_rows / sqlite_rows:.3f},"
        f" files {ctxlog_file / sqlite_file:.3f}"
    )


def file_bytes(db: Path) -> int:
    """The log's file and its -wal/-shm (not the read model, which is derived)."""
    return sum(p.stat().st_size for p in (db, *db.parent.glob(db.name + "-*")) if p.is_file())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "bench.db")
        await server.started()
        try:
            await http_overhead(server, args)
        finally:
            server.stop()
        graph_dir = Path(tmp) / "graph"
        graph_dir.mkdir()
        await checkpoint_sizes(graph_dir, args.steps)


if __name__ == "__main__":
    asyncio.run(main())

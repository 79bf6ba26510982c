"""A real ``ctxlog serve`` subprocess on a free loopback port, for the end-to-end tests and the
reliability scripts (crash, load, fuzz): start, wait until ready, SIGKILL, SIGTERM, and read
its resident memory and its log.

The server's output goes to a file, never a pipe, so a chatty server cannot block on a full
pipe; tests read it afterwards to check that no key and no traceback was logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import aiohttp

from api.testing import KEYS, Checker

ROOT = Path(__file__).resolve().parents[2]
KEYS_ENV = ",".join(f"{k.key}:{k.tenant}:{k.actor}" for k in KEYS)
"""The test keys of ``api.testing`` (tenant-a: key-alice, key-ann; tenant-b: key-bob)."""


def free_port() -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m api serve --db DB`` with the test keys (or ``keys``) and extra ``env``;
    ``db`` is a SQLite file or a ``postgresql://`` DSN (then ``log`` must be given).

    Each ``start`` picks a new free port, so a restart after SIGKILL never waits for the old
    socket to be released.
    """

    def __init__(
        self,
        db: Path | str,
        *,
        keys: str = KEYS_ENV,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        command: Sequence[str] = (sys.executable, "-m", "api"),
        cwd: Path = ROOT,
    ) -> None:
        self.db = db
        self.command = list(command)
        """How to run ``ctxlog`` (default: this checkout's, with this interpreter)."""
        self.cwd = cwd
        self.keys = keys
        self.env = dict(env or {})
        if log is None:
            assert isinstance(db, Path), "a server on a DSN needs a log file"
            log = db.with_name(db.name + ".server.log")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The base URL for WebSockets."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the process (appending to the log file); ``ready`` waits for it."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port = free_port()
        env = {
            **os.environ,
            **self.env,
            "CTXLOG_API_KEYS": self.keys,
            "CTXLOG_PORT": str(self.port),
            "CTXLOG_HOST": "127.0.0.1",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.command, "serve", "--db", str(self.db)],
                cwd=self.cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    async def ready(self, within: float = 60.0) -> None:
        """Until ``/healthz`` answers 200 (the projector has caught up with the log)."""
        async with aiohttp.ClientSession() as session, asyncio.timeout(within):
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited early:\n{self.output()[-3000:]}")
                try:
                    async with session.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    def ready_sync(self, within: float = 60.0) -> None:
        """``ready`` for synchronous fixtures (no event loop needed)."""
        deadline = time.monotonic() + within
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:  # refused while starting; 503 (HTTPError) while catching up
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become ready")
            time.sleep(0.05)

    async def started(self, within: float = 60.0) -> ServerProcess:
        """``start`` then ``ready``; returns self."""
        self.start()
        await self.ready(within)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, within: float = 30.0) -> int:
        """SIGTERM and wait: a graceful shutdown; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def rss_kib(self) -> int:
        """The server's resident set size in KiB (``VmRSS`` of /proc/PID/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in the process status")

    def head(self) -> int:
        """The log's last position, read from the database file beside the running server."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])
        finally:
            db.close()

    def output(self) -> str:
        """Everything the server logged so far (all starts)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def seed_context(
    session: aiohttp.ClientSession, server: ServerProcess, key: str = "key-alice"
) -> tuple[str, str]:
    """A fresh context of ``key``'s tenant holding one message: (context id, message id)."""
    headers = {"X-API-Key": key}
    async with session.post(f"{server.url}/api/v1/contexts", json={}, headers=headers) as r:
        assert r.status == 201, await r.text()
        cid = (await r.json())["id"]
    body = {"role": "user", "content": "x"}
    url = f"{server.url}/api/v1/contexts/{cid}/messages"
    async with session.post(url, json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        return cid, (await r.json())["messages"][0]["id"]


@contextlib.contextmanager
def serving(
    db: Path,
    *,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    keys: str = KEYS_ENV,
) -> Iterator[ServerProcess]:
    """A real server on ``db`` for the block (a module fixture's body); ``keys=""`` serves
    open. When it ends the server must stop cleanly, and its log hold no traceback and none
    of ``secrets``."""
    proc = ServerProcess(db, env=env, keys=keys)
    proc.start()
    try:
        proc.ready_sync()
        yield proc
    finally:
        code = proc.stop()
    log = proc.output()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for secret in secrets:
        assert secret not in log, "an API key was logged"


def key_secrets() -> list[str]:
    """The test keys themselves: what must never be logged or stored."""
    return [entry.split(":")[0] for entry in KEYS_ENV.split(",")]


def openapi_checker(server: ServerProcess) -> Checker:
    """A response checker for the server's own OpenAPI document."""
    with urllib.request.urlopen(f"{server.url}/openapi.json") as r:
        return Checker(json.loads(r.read()))

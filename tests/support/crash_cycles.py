"""Crash cycles against the real server: nothing acknowledged is lost, nothing is doubled.

Each cycle starts ``ctxlog serve`` as a subprocess on the same database file, drives
concurrent appends, edits, redactions, summaries, metadata patches, rollbacks, forks (forks of
forks among them) and creations over HTTP (every one with an Idempotency-Key and a unique
marker in its payload), and erasures of data subjects (contexts and messages name subjects,
so their content is sealed), and SIGKILLs the server at a random moment while requests are in
flight. Then, with no server running, it opens the log and checks:

- every request answered 2xx wrote its events exactly once (found by the event ids its
  Idempotency-Key derives, at the version it was answered with; each holds its marker unless
  its content was erased); a request answered 4xx wrote nothing; one that got no answer wrote
  all of its events or none;
- positions are 1..N with no gap, each stream's versions are 1..n, and the hash chain verifies.

After the restart: the read model has caught up to the log and every context the server
shows equals a fresh fold of its events (``projections.fold``); every request that got no
answer, and a sample of answered ones, is retried with its Idempotency-Key: answered ones
replay their first answer (``Idempotent-Replayed: true``, same version) and none writes twice
(an erasure has no key: retried, it completes what it began). Then every event sealed with a
key that is gone reads "[erased]" in the log, and none of its content shows anywhere the
server serves: no context now or at a past version, no window, no history.

Writers spread over several contexts: appends without If-Match to one hot context from 20+
writers are a known source of 412s (the service's retry budget), not what this measures.

``scripts/crash.py`` runs 20 or more cycles and prints the summary;
``tests/test_rest_server_crash.py`` runs a few.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from api.rest.render import render_context
from eventstore import ERASED, EventStore, RecordedEvent, SubjectErased
from projections import ContextState, TokenCounter, fold
from projections.base import NAMESPACE
from tests.support.server_process import ServerProcess

V1 = "/api/v1"
CTX = f"{V1}/contexts"
KEY_OF_TENANT = {"tenant-a": "key-alice", "tenant-b": "key-bob"}
KEYS = ("key-alice", "key-ann", "key-bob")
TENANT_OF_KEY = {"key-alice": "tenant-a", "key-ann": "tenant-a", "key-bob": "tenant-b"}
SUBJECTS = {"tenant-a": ("sa1", "sa2", "sa3"), "tenant-b": ("sb1", "sb2")}
"""The data subjects of each tenant: contexts and messages name them, erasures erase them."""
REFUSALS = {404, 409, 422}
"""What a write may legitimately be refused with here: its message was rolled away (404),
or redacted before an edit (422); 409 for a version out of range."""


@dataclass
class Sent:
    """One write request, as sent, and its first answer (``status`` None: none yet).

    ``version`` is the version the answer names: exactly the write's for a minimal answer or
    a replay, and at least the write's for a full context (it shows the context as it is
    when the answer is rendered, which may include later writes by others).
    """

    marker: str
    kind: str
    api_key: str
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    events: int
    status: int | None = None
    version: int | None = None
    exact: bool = False
    context_id: str | None = None
    error: str | None = None
    replayed: bool = False

    def content_token(self, index: int) -> str:
        """What only the content of this request's ``index``th event holds (sealed, so
        erasable): an append's messages carry its marker in their metadata too, and each
        may belong to another subject, so each has a token of its own."""
        return f"ck{self.marker[2:]}-{index}" if self.kind == "append" else self.marker

    def event_ids(self) -> list[str]:
        """The ids of the events this request writes, derived from its Idempotency-Key as
        the service derives them (``projections.commands``)."""
        tenant, key = TENANT_OF_KEY[self.api_key], self.headers.get("Idempotency-Key", "")
        return [str(uuid.uuid5(NAMESPACE, f"{tenant}\x00{key}\x00{i}")) for i in range(self.events)]


@dataclass
class Known:
    """What the driver knows of one context from answers it got."""

    tenant: str
    version: int = 1
    messages: list[str] = field(default_factory=list)
    depth: int = 0
    """0 for a context created as such, 1 for a fork of it, 2 for a fork of that fork..."""


@dataclass
class Report:
    """Counts over all cycles, and every failed check."""

    cycles: int = 0
    sent: int = 0
    acked: int = 0
    refused: collections.Counter[int] = field(default_factory=collections.Counter)
    unanswered: int = 0
    retried: int = 0
    replayed: int = 0
    events: int = 0
    contexts_compared: int = 0
    deepest_fork: int = 0
    erasures: int = 0
    erased_events: int = 0
    erased_checked: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record a failed check (the run goes on, to report everything), once."""
        if message not in self.failures:
            self.failures.append(message)

    def summary(self) -> str:
        """The report as text."""
        refused = ", ".join(f"{s}: {n}" for s, n in sorted(self.refused.items())) or "none"
        lines = [
            f"crash cycles          {self.cycles} (SIGKILL each, restart on the same file)",
            f"write requests        {self.sent} sent, {self.acked} answered 2xx,"
            f" {self.unanswered} unanswered at a kill",
            f"refused (legit 4xx)   {refused}",
            f"retried after restart {self.retried} ({self.replayed} replayed a first answer)",
            f"events in the log     {self.events} (positions and versions gap-free,"
            " hash chain verified after every kill)",
            f"contexts compared     {self.contexts_compared} (read model == fresh fold)",
            f"forks                 up to {self.deepest_fork} deep (forks of forks)",
            f"erasures              {self.erasures} answered 2xx; {self.erased_events} events"
            " sealed with a destroyed key at the end, all [erased] in the log;"
            f" {self.erased_checked} reads of the server after restarts showed none of them",
            f"time                  {self.seconds:.1f} s",
            f"failures              {len(self.failures)}",
        ]
        lines += [f"  - {f}" for f in self.failures[:50]]
        return "\n".join(lines)


class Workload:
    """Concurrent writers over several contexts, journaling every request."""

    def __init__(self, rng: random.Random, writers: int, contexts: int) -> None:
        self.rng = rng
        self.writers = writers
        self.initial = contexts
        self.known: dict[str, Known] = {}
        self.journal: list[Sent] = []

    def _request(
        self, kind: str, api_key: str, method: str, path: str, body: dict[str, Any], events: int
    ) -> tuple[Sent, str]:
        marker = "mk" + uuid.uuid4().hex
        encoded = msgspec.json.encode(body).replace(b"MARK", marker.encode())
        body = msgspec.json.decode(encoded.replace(b"CONTENT", b"ck" + marker[2:].encode()))
        headers = {"X-API-Key": api_key, "Idempotency-Key": f"crash-{marker}"}
        if kind == "append" and self.rng.random() < 0.5:
            headers["Prefer"] = "return=minimal"
        sent = Sent(marker, kind, api_key, method, path, body, headers, events)
        return sent, marker

    def next_request(self, writer: int) -> Sent:
        """A random write on one of the contexts this writer works on."""
        ids = sorted(self.known)
        cid = ids[(writer + self.rng.randrange(3)) % len(ids)]
        ctx = self.known[cid]
        key = self.rng.choice([k for k in KEYS if TENANT_OF_KEY[k] == ctx.tenant])
        base = f"{CTX}/{cid}"
        roll = self.rng.random()
        subjects = SUBJECTS[ctx.tenant]
        if roll < 0.012:
            subject = self.rng.choice(subjects)
            return self._request("erase", key, "POST", f"{V1}/subjects/{subject}/erase", {}, 0)[0]
        if roll < 0.05 and len(ids) < self.initial * 4:
            metadata = {"m": "MARK"}
            if self.rng.random() < 0.6:
                metadata["subject"] = self.rng.choice(subjects)
            return self._request("create", key, "POST", CTX, {"metadata": metadata}, 1)[0]
        if roll < 0.12 and len(ids) < self.initial * 4:
            forks = [c for c in ids if self.known[c].depth and self.known[c].tenant == ctx.tenant]
            if forks and self.rng.random() < 0.5:  # a fork of a fork
                base = f"{CTX}/{self.rng.choice(forks)}"
            body: dict[str, Any] = {"metadata": {"m": "MARK"}}
            return self._request("fork", key, "POST", f"{base}/fork", body, 1)[0]
        if roll < 0.20:
            body = {"to_version": self.rng.randint(1, ctx.version), "reason": "MARK"}
            return self._request("rollback", key, "POST", f"{base}/rollback", body, 1)[0]
        if roll < 0.25:
            return self._request("metadata", key, "PATCH", f"{base}/metadata", {"m": "MARK"}, 1)[0]
        if roll < 0.40 and ctx.messages:
            mid = self.rng.choice(ctx.messages)
            body = {"content": "edited MARK"}
            return self._request("edit", key, "PATCH", f"{base}/messages/{mid}", body, 1)[0]
        if roll < 0.43 and ctx.messages:
            mid = self.rng.choice(ctx.messages)
            body = {"reason": "MARK"}
            return self._request("redact", key, "POST", f"{base}/messages/{mid}/redact", body, 1)[0]
        if roll < 0.46 and ctx.messages:
            body = {"text": "summary MARK", "through_message_id": self.rng.choice(ctx.messages)}
            return self._request("summary", key, "POST", f"{base}/summaries", body, 1)[0]
        count = self.rng.choice((1, 1, 1, 2, 3))
        messages: list[dict[str, Any]] = [
            {"role": self.rng.choice(("user", "assistant")), "content": f"CONTENT-{i} " + "x" * 40,
             "id": str(uuid.uuid4()), "metadata": {"m": "MARK"}}
            for i in range(count)
        ]  # fmt: skip
        for message in messages:
            if self.rng.random() < 0.2:  # a message naming its own subject
                message["metadata"]["subject"] = self.rng.choice(subjects)
        return self._request(
            "append", key, "POST", f"{base}/messages", {"messages": messages}, count
        )[0]

    def deepen(self) -> Sent:
        """A fork of the deepest fork there is (one a cycle: forks of forks of forks...)."""
        cid = max(self.known, key=lambda c: self.known[c].depth)
        key = KEY_OF_TENANT[self.known[cid].tenant]
        body = {"metadata": {"m": "MARK"}}
        return self._request("fork", key, "POST", f"{CTX}/{cid}/fork", body, 1)[0]

    def erasure(self) -> Sent:
        """An erasure of one of a tenant's subjects (one a cycle, besides random ones)."""
        tenant = self.rng.choice(sorted(SUBJECTS))
        subject = self.rng.choice(SUBJECTS[tenant])
        path = f"{V1}/subjects/{subject}/erase"
        return self._request("erase", KEY_OF_TENANT[tenant], "POST", path, {}, 0)[0]

    def learn(self, sent: Sent, answer: dict[str, Any]) -> None:
        """Remember what a 2xx answer says: new contexts, versions, message ids."""
        if sent.kind == "erase":
            return
        if sent.kind in ("create", "fork"):
            sent.context_id = answer["id"]
            tenant = TENANT_OF_KEY[sent.api_key]
            parent = self.known.get((answer.get("parent") or {}).get("context_id", ""))
            depth = 0 if parent is None else parent.depth + 1
            self.known.setdefault(answer["id"], Known(tenant, answer["version"], depth=depth))
            return
        cid = sent.path.split("/")[4]
        ctx = self.known[cid]
        ctx.version = max(ctx.version, answer.get("version", 0))
        if sent.kind == "append":
            ctx.messages += [m["id"] for m in sent.body["messages"]]
            sent.context_id = cid
        else:
            sent.context_id = cid

    async def send(self, session: aiohttp.ClientSession, url: str, sent: Sent) -> Sent:
        """Send (or resend) one request; a copy holding the answer (status None: none)."""
        got = dataclasses.replace(sent, status=None, version=None, error=None)
        try:
            async with session.request(
                sent.method, url + sent.path, json=sent.body, headers=sent.headers
            ) as r:
                data = await r.read()
                got.status = r.status
                got.replayed = r.headers.get("Idempotent-Replayed") == "true"
        except (TimeoutError, aiohttp.ClientError) as e:
            got.error = type(e).__name__
            return got
        answer = msgspec.json.decode(data) if data else {}
        if 200 <= got.status < 300:
            got.version = answer.get("version")
            got.exact = got.replayed or "messages" not in answer
            self.learn(got, answer)
        else:
            got.error = str(answer.get("error", {}).get("code"))
        return got

    def record(self, sent: Sent, got: Sent) -> None:
        """Keep ``got`` as the request's first answer, if it has none yet."""
        if sent.status is None and got.status is not None:
            sent.status, sent.version, sent.exact = got.status, got.version, got.exact
            sent.context_id, sent.error, sent.replayed = got.context_id, got.error, got.replayed
        elif sent.status is None:
            sent.error = got.error

    async def writer(
        self, n: int, session: aiohttp.ClientSession, url: str, stop: asyncio.Event
    ) -> None:
        """Send requests one after another until ``stop`` or the server is gone."""
        while not stop.is_set():
            sent = self.next_request(n)
            self.journal.append(sent)
            self.record(sent, await self.send(session, url, sent))
            if sent.status is None:
                return  # the server was killed


async def _seed(work: Workload, session: aiohttp.ClientSession, url: str) -> None:
    for i in range(work.initial):
        key = ("key-alice", "key-bob")[i % 2]
        sent, _ = work._request("create", key, "POST", CTX, {"metadata": {"m": "MARK"}}, 1)
        work.journal.append(sent)
        work.record(sent, await work.send(session, url, sent))
        assert sent.status == 201, f"seeding failed: {sent.status} {sent.error}"


async def _drive(
    work: Workload, server: ServerProcess, session: aiohttp.ClientSession, rng: random.Random
) -> None:
    """Writers run until the server is SIGKILLed at a random moment after a few answers;
    beside them, a fork of the deepest fork and an erasure, one after the other."""
    stop = asyncio.Event()
    before = sum(1 for s in work.journal if s.status is not None)

    async def fork_then_erase() -> None:
        for sent in (work.deepen(), work.erasure()):
            work.journal.append(sent)
            work.record(sent, await work.send(session, server.url, sent))
            if sent.status is None:
                return  # the server was killed

    tasks = [
        asyncio.create_task(work.writer(n, session, server.url, stop)) for n in range(work.writers)
    ]
    tasks.append(asyncio.create_task(fork_then_erase()))
    deadline = time.monotonic() + 30
    while sum(1 for s in work.journal if s.status is not None) < before + 5:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(rng.uniform(0.0, 0.8))
    server.kill()
    stop.set()
    await asyncio.gather(*tasks)


async def _read_log(db: Path, report: Report) -> list[RecordedEvent]:
    """Every event, after checking positions, versions and the hash chain."""
    async with await EventStore.open_sqlite(str(db)) as store:
        events: list[RecordedEvent] = []
        after = 0
        while True:
            page, after = await store.read_all(after, 5000)
            events += page
            if len(page) < 5000:
                break
        verified = await store.verify()
    if not verified.ok:
        report.fail(f"hash chain broken: {verified.broken}")
    if [e.position for e in events] != list(range(1, len(events) + 1)):
        report.fail("positions have a gap or a repeat")
    versions: dict[str, list[int]] = collections.defaultdict(list)
    for e in events:
        versions[e.stream_id].append(e.version)
    for sid, vs in versions.items():
        if vs != list(range(1, len(vs) + 1)):
            report.fail(f"stream {sid} versions are not 1..n")
    report.events = len(events)
    return events


def _check_journal(work: Workload, events: list[RecordedEvent], report: Report) -> None:
    """Each answered request wrote exactly its events; refused ones none; others all or none.
    A request's events are found by the ids its Idempotency-Key derives; each holds the
    request's marker (mixed-up content would not), unless its content was erased."""
    by_id = {e.event_id: e for e in events}
    for s in work.journal:
        if s.kind == "erase":
            continue  # no key, no ids: _check_erased checks what it did
        found = [by_id[i] for i in s.event_ids() if i in by_id]
        for e in found:
            data = msgspec.json.encode(e.event)
            if s.marker.encode() not in data and ERASED.encode() not in data:
                report.fail(f"{s.kind} {s.marker}: event at {e.position} lacks its marker")
        if s.status is None:
            if len(found) not in (0, s.events):
                report.fail(f"{s.kind} {s.marker}: unanswered, {len(found)}/{s.events} events")
        elif 200 <= s.status < 300:
            stored = found[-1].version if found else None
            if len(found) != s.events:
                report.fail(f"{s.kind} {s.marker}: answered {s.status}, {len(found)} events")
            elif (
                s.version is not None
                and stored is not None
                and (s.version != stored if s.exact else s.version < stored)
            ):
                report.fail(f"{s.kind} {s.marker}: answered v{s.version}, stored v{stored}")
        elif found:
            report.fail(f"{s.kind} {s.marker}: answered {s.status} but wrote {len(found)} events")


async def _check_erased(
    work: Workload, db: Path, session: aiohttp.ClientSession, url: str, report: Report
) -> None:
    """Every event sealed with a key that is gone reads "[erased]" in the log, and what its
    content held (the request's content token) shows nowhere the server serves."""
    async with await EventStore.open_sqlite(str(db)) as store:
        events, after = [], 0
        while True:
            page, after = await store.read_all(after, 5000)
            events += page
            if len(page) < 5000:
                break
        sealing = {ref.key_id for e in events for ref in e.sealed_by}
        kept = await store.recorder.keys_by_id(sorted(sealing))
    gone = sealing - kept.keys()
    recorded = {k for e in events if isinstance(e.event, SubjectErased) for k in e.event.key_ids}
    if not gone <= recorded:
        report.fail(f"keys destroyed with no subject.erased after the retries: {gone - recorded}")
    by_id = {
        event_id: (s, index)
        for s in work.journal
        if s.kind != "erase"
        for index, event_id in enumerate(s.event_ids())
    }
    tokens = set()
    report.erased_events = 0  # as of this check: the last one's count is reported
    for e in events:
        if not any(ref.key_id in gone for ref in e.sealed_by):
            continue
        report.erased_events += 1
        data = msgspec.json.encode(e.event)
        if ERASED.encode() not in data:
            report.fail(f"event {e.position}: sealed with a destroyed key, yet readable")
        if (found := by_id.get(e.event_id)) is not None:
            sent, index = found
            tokens.add(sent.content_token(index))
    if not tokens:
        return
    for cid, ctx in work.known.items():
        key = KEY_OF_TENANT[ctx.tenant]
        past = max(1, ctx.version // 2)
        for path in (
            f"{CTX}/{cid}", f"{CTX}/{cid}?version={past}", f"{CTX}/{cid}/window",
            f"{CTX}/{cid}/events?limit=1000",
        ):  # fmt: skip
            async with session.get(url + path, headers={"X-API-Key": key}) as r:
                body = await r.text()
            report.erased_checked += 1
            if shown := [t for t in tokens if t in body]:
                report.fail(f"{path}: erased content still served ({len(shown)} of it)")


def _folds(events: list[RecordedEvent]) -> dict[str, ContextState]:
    """Every stream folded from scratch (forks resolve their parents' prefixes)."""
    counter = TokenCounter()
    streams: dict[str, list[RecordedEvent]] = collections.defaultdict(list)
    for e in events:
        streams[e.stream_id].append(e)
    memo: dict[tuple[str, int], ContextState] = {}

    def resolve(context_id: str, version: int) -> ContextState:
        if (context_id, version) not in memo:
            memo[context_id, version] = fold(
                streams[context_id][:version], counter=counter, resolve=resolve
            )
        return memo[context_id, version]

    return {sid: resolve(sid, len(evs)) for sid, evs in streams.items()}


async def _compare(
    folds: dict[str, ContextState], session: aiohttp.ClientSession, url: str, report: Report
) -> None:
    """The server's view of every context equals the fresh fold."""
    for cid, state in folds.items():
        key = KEY_OF_TENANT[state.tenant or "tenant-a"]
        async with session.get(f"{url}{CTX}/{cid}", headers={"X-API-Key": key}) as r:
            body = await r.read()
            status = r.status
        if state.deleted:
            if status != 404:
                report.fail(f"deleted context {cid} answered {status}")
            continue
        expected = msgspec.json.decode(msgspec.json.encode(render_context(state)))
        if status != 200:
            report.fail(f"context {cid}: {status} {body[:200]!r}")
        elif (got := msgspec.json.decode(body)) != expected:
            diff = sorted(k for k in expected if expected[k] != got.get(k))
            first = next(
                (
                    (a, b)
                    for k in ("messages", "summaries")
                    for a, b in zip(expected[k], got.get(k) or [], strict=False)
                    if a != b
                ),
                None,
            )
            report.fail(f"context {cid}: read model differs from the fold in {diff} {first}")
        report.contexts_compared += 1


async def _retry(
    work: Workload, session: aiohttp.ClientSession, url: str, rng: random.Random, report: Report
) -> None:
    """Resend every unanswered request and a sample of answered ones, with their keys."""
    unanswered = [s for s in work.journal if s.status is None]
    answered = [
        s
        for s in work.journal
        if s.status is not None and 200 <= s.status < 300 and s.kind != "erase"
    ]
    sample = rng.sample(answered, min(10, len(answered)))
    for s in sample:
        got = await work.send(session, url, s)
        report.retried += 1
        if not got.replayed or got.status != s.status or got.context_id != s.context_id:
            report.fail(
                f"{s.kind} {s.marker}: the retry of a request answered {s.status} got"
                f" {got.status} {got.error or ''} instead of a replay"
            )
        elif s.exact and got.version != s.version:
            report.fail(f"{s.kind} {s.marker}: replayed v{got.version}, first v{s.version}")
        else:
            report.replayed += 1
    for s in unanswered:
        got = await work.send(session, url, s)
        work.record(s, got)
        report.retried += 1
        report.replayed += got.replayed
        if s.status is None or not (200 <= s.status < 300 or s.status in REFUSALS):
            report.fail(f"{s.kind} {s.marker}: retry answered {s.status} {s.error}")


def _tally(work: Workload, report: Report) -> None:
    report.sent = len(work.journal)
    report.acked = sum(1 for s in work.journal if s.status and 200 <= s.status < 300)
    report.erasures = sum(
        1 for s in work.journal if s.kind == "erase" and s.status and 200 <= s.status < 300
    )
    report.deepest_fork = max((c.depth for c in work.known.values()), default=0)
    report.refused = collections.Counter(
        s.status for s in work.journal if s.status is not None and s.status >= 300
    )
    for s in work.journal:
        if s.status is not None and s.status >= 300 and s.status not in REFUSALS:
            report.fail(f"{s.kind} {s.marker}: answered {s.status} {s.error}")


async def run(
    db: Path,
    *,
    cycles: int,
    writers: int = 16,
    contexts: int = 8,
    seed: int | None = None,
    env: dict[str, str] | None = None,
) -> Report:
    """Run ``cycles`` kill/restart cycles on ``db``; the report lists every failed check."""
    rng = random.Random(seed)
    report = Report()
    work = Workload(rng, writers, contexts)
    server = ServerProcess(db, env=env)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        folds: dict[str, ContextState] = {}
        for cycle in range(cycles + 1):
            await server.started()
            if cycle == 0:
                await _seed(work, session, server.url)
            else:
                await _compare(folds, session, server.url, report)
                await _retry(work, session, server.url, rng, report)
                await _check_erased(work, db, session, server.url, report)
            if cycle == cycles:
                break
            await _drive(work, server, session, rng)
            report.cycles += 1
            report.unanswered += sum(1 for s in work.journal if s.status is None)
            events = await _read_log(db, report)
            _check_journal(work, events, report)
            folds = _folds(events)
        code = server.stop()
    if code != 0:
        report.fail(f"the server exited {code} on SIGTERM")
    events = await _read_log(db, report)
    _check_journal(work, events, report)
    if any(s.status is None for s in work.journal):
        report.fail("requests still unanswered after their retries")
    _tally(work, report)
    log = server.output()
    for key in KEYS:
        if key in log:
            report.fail(f"an API key ({key[:5]}…) appears in the server log")
    if "Traceback" in log:
        report.fail("the server logged a traceback")
    report.seconds = time.monotonic() - started
    return report

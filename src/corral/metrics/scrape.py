"""The agents' own metrics: each running instance with ``metrics:`` scraped when corral's
``/metrics`` is, all at once, bounded, and its samples handed to ``relabel``.

A scrape is bounded in time (``TIMEOUT`` for connecting, the request and the whole body), in
bytes (``MAX_BODY``; headers ``MAX_HEAD``) and in samples (``MAX_SAMPLES``; the fleet's
together ``MAX_FLEET_SAMPLES``, in the targets' order): past any bound the instance's scrape
fails, is shown as ``corral_instance_scrape_up 0`` and gives no samples;
corral's own exposition is never an error for it. At most ``PARALLEL`` instances are scraped
at a time; when a scrape of corral uses the last round and when it waits for a new one:
``Scraper``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from corral.metrics import relabel

TIMEOUT = 1.0
MAX_BODY = 4 * 1024 * 1024
MAX_HEAD = 16 * 1024
MAX_SAMPLES = 10_000
MAX_FLEET_SAMPLES = 250_000  # all instances together: past it, the later ones fail
PARALLEL = 64
MAX_AGE = 0.5
STALE = 60.0
CHANGED_WAIT = 0.025  # corral's /metrics after instances started or stopped: see ``Scraper``


class Target(NamedTuple):
    agent: str
    instance: str
    host: str | None  # None: the host cannot reach it (``network: none``)
    port: int
    path: str


@dataclass(slots=True)
class Result:
    target: Target
    up: bool
    duration: float
    parsed: relabel.Parsed = field(default_factory=lambda: relabel.Parsed({}))
    error: str = ""


class ScrapeFailed(Exception):
    pass


async def fetch(host: str, port: int, path: str, *, max_body: int = MAX_BODY) -> bytes:
    """The body of ``GET path`` (HTTP/1.0: no chunks, the server closes), status 200 only."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                     "Accept: text/plain;version=0.0.4\r\n\r\n".encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ScrapeFailed(f"headers over {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError:
            raise ScrapeFailed("the connection closed before the headers ended") from None
        first = head.split(b"\r\n", 1)[0]
        status = first.split()
        if len(status) < 2 or status[1] != b"200":
            raise ScrapeFailed(f"answered {first[:100].decode('latin-1')!r}")
        if b"transfer-encoding:" in head.lower():
            raise ScrapeFailed("answered with a transfer encoding (HTTP/1.0 was asked)")
        body = await reader.read(max_body + 1)
        parts = [body]
        size = len(body)
        while body and size <= max_body:
            body = await reader.read(max_body + 1 - size)
            parts.append(body)
            size += len(body)
        if size > max_body:
            raise ScrapeFailed(f"body over {max_body} bytes")
        return b"".join(parts)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def scrape(target: Target) -> Result:
    start = time.monotonic()
    if target.host is None:
        return Result(target, False, 0.0, error="not reachable from the host (its network)")
    try:
        async with asyncio.timeout(TIMEOUT):
            body = await fetch(target.host, target.port, target.path, max_body=MAX_BODY)
        parsed = relabel.parse(body.decode("utf-8", "replace"), target.agent, target.instance,
                               max_samples=MAX_SAMPLES)
    except TimeoutError:
        return Result(target, False, time.monotonic() - start, error=f"over {TIMEOUT}s")
    except (OSError, ScrapeFailed, relabel.Refused) as exc:
        return Result(target, False, time.monotonic() - start, error=str(exc))
    return Result(target, True, time.monotonic() - start, parsed)


@dataclass(frozen=True, slots=True)
class Round:
    """One scrape of every target: the results, and their samples written once
    (``relabel.render``; ``clashes``: samples left out per result, a family typed otherwise)."""

    targets: tuple[Target, ...]
    results: list[Result]
    text: bytes
    clashes: dict[int, int]
    done_at: float


NONE = Round((), [], b"", {}, 0.0)


def collected(results: list[Result]) -> Round:
    """The round of these results, their samples written now."""
    total = 0
    for i, r in enumerate(results):
        total += r.parsed.samples
        if total > MAX_FLEET_SAMPLES and r.up:
            results[i] = Result(r.target, False, r.duration,
                                error=f"the fleet's samples are over {MAX_FLEET_SAMPLES}")
    text, clashes = relabel.render([r.parsed for r in results])
    return Round(tuple(r.target for r in results), results, text.encode(), clashes,
                 time.monotonic())


class Scraper:
    """Rounds of scrapes over the targets the daemon hands it (the running instances).

    A scrape of corral answers with the last round of the same targets when it is younger than
    ``STALE`` and starts the next one meanwhile (so corral's ``/metrics`` costs the render, not
    the agents' answers: 500 instances take ~0.3 s to scrape here); it waits for a round only
    when there is none that recent (the first scrape, a long pause), and, given a ``budget``,
    no longer than that: then the last round answers, or none at all when there is none
    recent (no agent samples and no ``scrape_up`` for them: unknown, not failed), and the
    next scrape has the new one. ``warm`` starts a round before anyone asks (instances with
    ``metrics:`` started), so a first scrape mostly finds one. A round younger than
    ``MAX_AGE`` is not repeated."""

    def __init__(self) -> None:
        self._last: Round | None = None
        self._next: asyncio.Task[Round] | None = None
        self._next_targets: tuple[Target, ...] = ()

    async def round(self, targets: list[Target], budget: float | None = None) -> Round:
        """``budget``: when the targets changed since a recent round (an instance started or
        stopped), how long to wait for the new round before answering with that last one
        (whose instances mostly run on); None waits for it."""
        wanted = tuple(targets)
        if not wanted:
            return NONE
        age = time.monotonic() - self._last.done_at if self._last is not None else STALE
        same = self._last is not None and self._last.targets == wanted
        if same and age < MAX_AGE:
            assert self._last is not None
            return self._last
        if self._next is None or self._next.done() or self._next_targets != wanted:
            self._next_targets = wanted
            self._next = asyncio.ensure_future(self._scrape_all(wanted))
        if same and age < STALE:
            assert self._last is not None
            return self._last
        if budget is not None:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self._next), budget)
            if self._last is not None and age < STALE:
                return self._last
            return NONE  # no round yet: the agents' samples come with the next scrape
        return await asyncio.shield(self._next)

    def warm(self, targets: list[Target]) -> None:
        """Start a round now, answered to no one, so the next scrape of corral finds it done
        (the daemon calls it when instances with ``metrics:`` start)."""
        wanted = tuple(targets)
        if not wanted or (self._next is not None and not self._next.done()
                          and self._next_targets == wanted):
            return
        self._next_targets = wanted
        self._next = asyncio.ensure_future(self._scrape_all(wanted))

    async def _scrape_all(self, targets: tuple[Target, ...]) -> Round:
        gate = asyncio.Semaphore(PARALLEL)

        async def one(target: Target) -> Result:
            async with gate:
                return await scrape(target)

        done = collected(list(await asyncio.gather(*(one(t) for t in targets))))
        if self._last is None or self._last.done_at < done.done_at:
            self._last = done
        return done

"""The agents' own metrics: an exposition re-exposed with agent and instance labels, a hostile
one unable to break corral's, and scrapes of real HTTP servers bounded in time, bytes and
samples. corral's whole exposition is checked by Prometheus' own parser (``promtool check
metrics``) where promtool is installed, and by prometheus_client's parser always."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.metrics import Metrics, relabel, scrape
from corral.metrics.scrape import Scraper, Target

GOOD = """\
# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{path="/a",code="200"} 3
requests_total{path="/b",agent="spoof",instance="x"} 1 1700000000000
requests_created 1.7e9
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 1
latency_seconds_bucket{le="+Inf"} 2
latency_seconds_sum 0.3
latency_seconds_count 2
# TYPE temperature gauge
temperature{room="a \\"b\\" c"} -Inf
queue_depth NaN
"""

HOSTILE = """\
corral_instance_up{agent="web",instance="web.1"} 0
# TYPE corral_supervisor_instances gauge
corral_supervisor_instances 999
twice{a="1",a="2"} 1
reserved{__name__="other"} 1
not_a_number abc
bad-name 1
unclosed{a="1" 1
overflow 1e400
huge 1ZEROS
# TYPE requests_total gauge
# TYPE temperature counter
temperature 5
""".replace("ZEROS", "0" * 400)  # past the float range: Prometheus refuses it


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend((s.name, s.labels, s.value)
                                               for s in family.samples)
    return out


def promtool_check(text: str) -> None:
    """Prometheus' own parser: what would fail its scrape fails here (lint notes aside)."""
    if shutil.which("promtool") is None:
        return
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    said = done.stdout + done.stderr
    assert "parsing error" not in said and done.returncode in (0, 3), said  # 3: lint notes


def test_samples_get_agent_and_instance_labels() -> None:
    parsed = relabel.parse(GOOD, "web", "web.1", max_samples=100)
    text, clashes = relabel.render([parsed])
    assert clashes == {}
    got = families(text)
    assert got["requests"] == [
        ("requests_total", {"agent": "web", "instance": "web.1", "path": "/a", "code": "200"}, 3),
        ("requests_total", {"agent": "web", "instance": "web.1", "path": "/b",
                            "exported_agent": "spoof", "exported_instance": "x"}, 1)]
    assert [s[0] for s in got["latency_seconds"]] == [
        "latency_seconds_bucket", "latency_seconds_bucket", "latency_seconds_sum",
        "latency_seconds_count"]
    assert got["temperature"][0][1]["room"] == 'a "b" c'
    assert "requests_created" not in text  # creation times are left out
    assert " 1700000000000" not in text  # so are timestamps
    assert parsed.samples == 8 and parsed.dropped == 0
    promtool_check(text)


def test_a_hostile_exposition_cannot_break_or_pass_for_corral() -> None:
    good = relabel.parse(GOOD, "web", "web.1", max_samples=100)
    bad = relabel.parse(HOSTILE, "evil", "evil.1", max_samples=100)
    assert bad.samples == 1  # only "temperature 5", and its family is typed otherwise below
    assert bad.dropped == 9
    text, clashes = relabel.render([good, bad])
    assert clashes == {1: 1}  # web's temperature is a gauge: evil's counter samples go
    assert "corral_" not in text
    assert 'instance="evil.1"' not in text
    rendered = Metrics().render([], {}, {}, scrape.collected([
        scrape.Result(Target("web", "web.1", "127.0.0.1", 1, "/metrics"), True, 0.01, good),
        scrape.Result(Target("evil", "evil.1", "127.0.0.1", 2, "/metrics"), True, 0.01, bad),
    ])).decode()
    got = families(rendered)  # one parse of the whole: no family twice, every line valid
    assert got["corral_supervisor_instances"] == [("corral_supervisor_instances", {}, 0.0)]
    dropped = {s[1]["instance"]: s[2] for s in got["corral_instance_scrape_samples_dropped"]}
    assert dropped == {"web.1": 0, "evil.1": 10}
    promtool_check(rendered)


def test_a_family_named_as_an_earlier_ones_samples_is_left_out() -> None:
    """Prometheus refuses a TYPE line after samples of its name: within one instance, and
    across two."""
    one = relabel.parse("# TYPE foo counter\nfoo_total 1\n# TYPE foo_total gauge\n"
                        "foo_total 2\n# TYPE corral counter\ncorral_total 1\n",
                        "a", "a.1", max_samples=10)
    two = relabel.parse("# TYPE foo_total gauge\nfoo_total 3\n", "b", "b.1", max_samples=10)
    text, clashes = relabel.render([one, two])
    assert clashes == {0: 1, 1: 1}
    assert one.dropped == 1  # corral_total: one of corral's names
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        'foo_total{agent="a",instance="a.1"} 1']
    promtool_check(text)


def test_hostile_lines_take_linear_time() -> None:
    """Lines built against backtracking: each run of blanks touches no other (see _SAMPLE)."""
    text = ("a{b=\"c\"," + " " * 200_000 + "\n" + "x" + " " * 100_000 + "1 " + " " * 100_000
            + "z\n" + "y{" + 'a="b",' * 20_000 + " " * 1000 + "\n")
    parsed = relabel.parse(text, "a", "a.1", max_samples=10)
    assert parsed.samples == 0 and parsed.dropped == 3


def test_too_many_samples_are_refused_whole() -> None:
    text = "".join(f"m{{i=\"{i}\"}} {i}\n" for i in range(11))
    with pytest.raises(relabel.Refused):
        relabel.parse(text, "a", "a.1", max_samples=10)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def answering(status: bytes, body: bytes, *, stall: bool = False) -> Handler:
    """A server answering ``status`` and ``body``; ``stall``: never, until the client goes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if stall:
            await reader.read()  # the end: the client gave up
        else:
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\n\r\n"
                         + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        writer.close()

    return handle


def test_scrapes_are_bounded_and_concurrent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape, "TIMEOUT", 0.5)
    monkeypatch.setattr(scrape, "MAX_BODY", 64 * 1024)

    async def main() -> dict[str, scrape.Result]:
        async with server(answering(b"200 OK", GOOD.encode())) as ok, \
                server(answering(b"500 Oops", b"no")) as broken, \
                server(answering(b"200 OK", GOOD.encode(), stall=True)) as slow, \
                server(answering(b"200 OK", b"x 1\n" * 100_000)) as huge:
            closed = (await asyncio.start_server(answering(b"", b""), "127.0.0.1", 0))
            port = closed.sockets[0].getsockname()[1]
            closed.close()
            await closed.wait_closed()
            targets = [Target("a", f"a.{i}", "127.0.0.1", p, "/metrics")
                       for i, p in enumerate((ok, broken, slow, slow, huge, port), 1)]
            targets.append(Target("b", "b.1", None, 0, "/metrics"))
            loop = asyncio.get_running_loop()
            start = loop.time()
            results = (await Scraper().round(targets)).results
            assert loop.time() - start < 1.5  # the two slow ones time out together
            return {r.target.instance: r for r in results}

    got = asyncio.run(main())
    assert {name: r.up for name, r in got.items()} == {
        "a.1": True, "a.2": False, "a.3": False, "a.4": False, "a.5": False, "a.6": False,
        "b.1": False}
    assert got["a.1"].parsed.samples == 8
    assert "500" in got["a.2"].error
    assert "over 0.5s" in got["a.3"].error
    assert "body over" in got["a.5"].error
    assert "reachable" in got["b.1"].error
    text = Metrics().render([], {}, {}, scrape.collected(list(got.values()))).decode()
    up = {s[1]["instance"]: s[2] for s in families(text)["corral_instance_scrape_up"]}
    assert up == {"a.1": 1, "a.2": 0, "a.3": 0, "a.4": 0, "a.5": 0, "a.6": 0, "b.1": 0}
    assert 'requests_total{agent="a",instance="a.1",path="/a",code="200"} 3' in text


def test_the_fleet_s_samples_are_bounded_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape, "MAX_FLEET_SAMPLES", 20)
    results = [scrape.Result(Target("a", f"a.{i}", "127.0.0.1", i, "/metrics"), True, 0.0,
                             relabel.parse("".join(f'm{{k="{k}"}} 1\n' for k in range(8)),
                                           "a", f"a.{i}", max_samples=10))
               for i in range(1, 5)]
    got = scrape.collected(results)
    assert [r.up for r in got.results] == [True, True, False, False]
    assert got.text.decode().count("\nm{") == 16
    assert "over 20" in got.results[2].error


def test_after_instances_changed_a_budget_answers_with_the_last_round_meanwhile() -> None:
    """An instance started (the targets changed): with a budget, corral's /metrics does not
    wait out a slow round; it answers with the last one, and the next scrape has the new."""
    async def fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(b"200 OK", b"n 1\n")(reader, writer)

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        await answering(b"200 OK", b"n 2\n")(reader, writer)

    async def main() -> None:
        async with server(fast) as one, server(slow) as two:
            scraper = Scraper()
            before = [Target("a", "a.1", "127.0.0.1", one, "/metrics")]
            last = await scraper.round(before)  # none yet: waited for
            now = [*before, Target("a", "a.2", "127.0.0.1", two, "/metrics")]
            started = time.monotonic()
            assert await scraper.round(now, 0.05) is last
            assert time.monotonic() - started < 0.4
            await asyncio.sleep(0.7)
            assert len((await scraper.round(now, 0.05)).results) == 2

    asyncio.run(main())


def test_with_no_round_yet_a_budget_answers_none_and_a_warm_up_makes_the_first(
        ) -> None:
    """corral's first /metrics never waits out the agents: with no round yet it answers
    within its budget with none (no samples, no scrape_up: unknown, not failed); the
    daemon's warm-up (``warm``, when instances with ``metrics:`` start) makes a round that a
    scrape after it answers from at once."""
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.4)
        await answering(b"200 OK", b"n 1\n")(reader, writer)

    async def main() -> None:
        async with server(slow) as port:
            targets = [Target("a", "a.1", "127.0.0.1", port, "/metrics")]
            cold = Scraper()
            assert await cold.round(targets, 0.05) is scrape.NONE  # the 0.4 s not waited
            warmed = Scraper()
            warmed.warm(targets)
            in_flight = warmed._next
            warmed.warm(targets)  # one round in flight, not two
            assert warmed._next is in_flight
            assert in_flight is not None
            await in_flight
            found = await warmed.round(targets, 0.05)
            assert found is in_flight.result()  # the warm-up's, no new wait
            assert [r.up for r in found.results] == [True]
            await asyncio.sleep(0.5)  # the cold scraper's round ends before the loop does

    asyncio.run(main())


def test_a_round_is_shared_while_fresh_and_served_stale_while_the_next_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape, "MAX_AGE", 0.5)
    monkeypatch.setattr(scrape, "STALE", 2.0)
    hits = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        await answering(b"200 OK", f"n {hits}\n".encode())(reader, writer)

    def value(r: scrape.Round) -> str:
        return r.text.decode().rsplit(" ", 1)[1].strip()

    async def main() -> None:
        async with server(handle) as port:
            scraper = Scraper()
            targets = [Target("a", "a.1", "127.0.0.1", port, "/metrics")]
            first, second = await asyncio.gather(scraper.round(targets),
                                                 scraper.round(targets))
            assert first is second and value(first) == "1" and hits == 1  # one round for both
            assert await scraper.round(targets) is first  # fresh: not repeated
            await asyncio.sleep(0.6)
            assert await scraper.round(targets) is first  # stale: served, the next one starts
            await asyncio.sleep(0.1)
            assert value(await scraper.round(targets)) == "2" and hits == 2  # fresh again
            await asyncio.sleep(2.1)  # older than STALE: this scrape waits for a new round
            assert value(await scraper.round(targets)) == "3"
            other = [*targets, Target("a", "a.2", "127.0.0.1", port, "/metrics")]
            assert len((await scraper.round(other)).results) == 2  # new targets: waited for
            assert await scraper.round([]) is scrape.NONE

    asyncio.run(main())


def test_where_the_host_scrapes_each_instance() -> None:
    from corral.manifest import decode
    from corral.manifest.peers import scrape_address

    m = decode.manifest({"name": "p", "agents": {
        "host": {"command": ["x"], "replicas": 2, "metrics": {"port": 9100}},
        "box": {"isolation": "container", "container": {"image": "img", "ports": ["18080:8080"]},
                "command": ["x"], "metrics": {"port": 8080, "path": "/m"}},
        "shut": {"isolation": "sandbox", "command": ["x"], "metrics": {"port": 9100}},
        "open": {"isolation": "sandbox", "network": "host", "command": ["x"],
                 "metrics": {"port": 9300}},
    }})
    a = m.agents
    assert scrape_address(a["host"], 1) == ("127.0.0.1", 9100)
    assert scrape_address(a["host"], 2) == ("127.0.0.1", 9101)  # replicas: one port each
    assert scrape_address(a["box"], 1) == ("127.0.0.1", 18080)  # the port publishing it
    assert a["box"].metrics is not None and a["box"].metrics.path == "/m"
    assert scrape_address(a["shut"], 1) is None  # network none: nothing reaches it
    assert scrape_address(a["open"], 1) == ("127.0.0.1", 9300)
    placed = decode.manifest({"name": "p", "agents": {
        "far": {"command": ["x"], "placement": "fake", "metrics": {"port": 9100}},
        "near": {"command": ["x"], "placement": "local", "metrics": {"port": 9100}}}}).agents
    assert scrape_address(placed["far"], 1) is None  # on another node: not scraped here
    assert scrape_address(placed["near"], 1) == ("127.0.0.1", 9100)


def test_an_agent_without_metrics_keeps_its_spec_hash() -> None:
    from corral.manifest import decode

    plain = {"command": ["x"]}
    with_metrics = {"command": ["x"], "metrics": {"port": 9100}}
    m = decode.manifest({"name": "p", "agents": {"a": plain, "b": with_metrics}})
    assert b"metrics" not in decode.canonical(m.agents["a"])
    assert b'"metrics":{"port":9100,"path":"/metrics"}' in decode.canonical(m.agents["b"])

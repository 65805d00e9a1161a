"""``corral logs`` as compose users expect it, and what a record says: levels taken from the
line, a traceback (or a Java, Node.js or Go stack) as one record, the agent's own fields,
RFC 3339 times, names of instances, history before following, and the files read after
``down``, with no daemon."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import CORRAL, Project, running

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

TALKER = """\
import json, logging, sys
print("hello plain", flush=True)
print(json.dumps({"msg": "order placed", "level": "info", "order": 17, "user": "ann"}),
      flush=True)
print("Resolved 3 packages in 2ms", file=sys.stderr, flush=True)
print('127.0.0.1 - - [02/Dec/2026 14:03:05] "GET / HTTP/1.1" 200 -', file=sys.stderr,
      flush=True)
print("[error] disk gone", file=sys.stderr, flush=True)
print("ts=1 level=warn msg=slow", file=sys.stderr, flush=True)
logging.warning("careful")
def fail():
    raise ValueError("boom")
fail()
"""


STUCK = """\
import sys, time
sys.stderr.write('Traceback (most recent call last):\\n  File "stuck.py", line 9, in <module>\\n')
sys.stderr.flush()
time.sleep(3600)
"""


def json_records(project: Project, *args: str) -> list[dict[str, Any]]:
    out = project.corral("logs", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_levels_come_from_the_line_and_a_traceback_is_one_record(project: Project) -> None:
    project.file("talker.py", TALKER)
    project.file("stuck.py", STUCK)
    project.write("""
        name: levels
        agents:
          talker:
            command: python3 talker.py
            restart: "no"
          stuck:
            command: python3 stuck.py
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["talker.1"]["state"] == "exited")
    # a traceback left unfinished by a running agent is written after a short idle time
    project.wait_for(lambda r: [x["message"] for x in project.records("stuck")] == [
        'Traceback (most recent call last):\n  File "stuck.py", line 9, in <module>'],
        what="the unfinished traceback")
    assert project.ps()["stuck.1"]["state"] == "running"
    by_message = {r["message"].splitlines()[0]: r for r in json_records(project, "talker")}
    levels = {m: (r["level"], r["stream"]) for m, r in by_message.items()}
    assert levels["hello plain"] == ("info", "stdout")
    assert levels["order placed"] == ("info", "stdout")
    assert levels["Resolved 3 packages in 2ms"] == ("info", "stderr")  # progress, not an error
    assert levels['127.0.0.1 - - [02/Dec/2026 14:03:05] "GET / HTTP/1.1" 200 -'] == (
        "info", "stderr")
    assert levels["[error] disk gone"] == ("error", "stderr")
    assert levels["ts=1 level=warn msg=slow"] == ("warn", "stderr")
    assert levels["WARNING:root:careful"] == ("warn", "stderr")
    stack = by_message["Traceback (most recent call last):"]
    assert stack["level"] == "error"
    lines = stack["message"].splitlines()
    assert lines[-1] == "ValueError: boom" and any(x.startswith("  File") for x in lines)
    assert not any(r["message"].startswith(("  File", "ValueError")) for r in by_message.values())
    assert all(RFC3339.fullmatch(r["timestamp"]) for r in by_message.values())

    text = project.corral("logs", "--no-color").stdout.splitlines()
    assert "talker.1 | order placed order=17 user=ann" in text  # the agent's own fields
    at = text.index("talker.1 | Traceback (most recent call last):")  # line by line, prefixed
    assert text[at + 1].startswith("talker.1 |   File") and "talker.1 | ValueError: boom" in text
    warn = project.corral("logs", "--level", "warn", "--no-color").stdout
    assert "careful" in warn and "disk gone" in warn and "Traceback" in warn
    assert "hello plain" not in warn and "Resolved" not in warn and "GET /" not in warn
    stamped = project.corral("logs", "-t", "--no-color", "--grep", "^hello").stdout
    assert re.fullmatch(rf"talker\.1 \| {RFC3339.pattern} hello plain\n", stamped), stamped


CRASHER = """\
import sys, time
def say(*lines):
    for line in lines:  # line by line, flushed each, as a JVM's System.err prints
        sys.stderr.write(line + "\\n")
        sys.stderr.flush()
say('Exception in thread "main" java.lang.IllegalStateException: boom',
    "\\tat com.acme.Main.run(Main.java:12)", "\\tat com.acme.Main.main(Main.java:5)",
    "Caused by: java.io.IOException: disk gone", "\\tat com.acme.Disk.read(Disk.java:3)",
    "\\t... 1 more")
print("between one", flush=True)
time.sleep(0.2)
sys.stderr.write("TypeError: x is not a function\\n    at fn (/app/index.js:1:2)\\n"
                 "    at Object.<anonymous> (/app/index.js:3:1)\\n")  # one write, as node
sys.stderr.flush()
say("between two")
time.sleep(0.2)
say("panic: boom", "", "goroutine 1 [running]:", "main.main()", "\\t/app/main.go:12 +0x1d",
    "exit status 2")
"""


def test_java_node_and_go_stacks_are_one_error_record_each(project: Project) -> None:
    project.file("crasher.py", CRASHER)
    project.write("""
        name: stacks
        agents:
          crasher:
            command: python3 crasher.py
            restart: "no"
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["crasher.1"]["state"] == "exited")
    shown = [(r["level"], r["message"]) for r in json_records(project, "crasher")]
    assert sorted(shown, key=lambda r: r[1]) == sorted([
        ("error", 'Exception in thread "main" java.lang.IllegalStateException: boom\n'
                  "\tat com.acme.Main.run(Main.java:12)\n\tat com.acme.Main.main(Main.java:5)\n"
                  "Caused by: java.io.IOException: disk gone\n"
                  "\tat com.acme.Disk.read(Disk.java:3)\n\t... 1 more"),
        ("info", "between one"),
        ("error", "TypeError: x is not a function\n    at fn (/app/index.js:1:2)\n"
                  "    at Object.<anonymous> (/app/index.js:3:1)"),
        ("info", "between two"),
        ("error", "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n"
                  "\t/app/main.go:12 +0x1d\nexit status 2"),
    ], key=lambda r: r[1]), shown
    text = project.corral("logs", "--no-color", "--level", "error").stdout.splitlines()
    assert text[text.index("crasher.1 | panic: boom") + 2] == "crasher.1 | goroutine 1 [running]:"


CRASH_JAVA = """\
public class Crash {
    static void run() {
        try {
            throw new java.io.IOException("disk gone");
        } catch (java.io.IOException e) {
            throw new IllegalStateException("boom", e);
        }
    }
    public static void main(String[] args) { run(); }
}
"""


def test_a_real_jvm_and_node_print_their_stacks_as_one_error_record_each(
        project: Project) -> None:
    for tool, package in (("javac", "default-jdk-headless"), ("node", "nodejs")):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} (scripts/install.sh --test installs {package})")
    project.file("Crash.java", CRASH_JAVA)
    project.write("""
        name: runtimes
        agents:
          jvm:
            command: java Crash.java
            restart: "no"
          node:
            command: node -e 'function f() { null.x() } f()'
            restart: "no"
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["jvm.1"]["state"] == r["node.1"]["state"] == "exited",
                     timeout=120)
    jvm = json_records(project, "jvm")
    assert [r["level"] for r in jvm] == ["error"], jvm  # the JVM prints it line by line
    lines = jvm[0]["message"].splitlines()
    assert lines[0] == 'Exception in thread "main" java.lang.IllegalStateException: boom'
    assert "Caused by: java.io.IOException: disk gone" in lines
    assert all(x.startswith(("\tat ", "\t... ", "Caused by: ")) for x in lines[1:]), lines
    node = json_records(project, "node")
    stacks = [r for r in node if "\n    at " in r["message"]]
    assert [r["level"] for r in stacks] == ["error"], node
    assert stacks[0]["message"].startswith("TypeError: Cannot read properties of null")
    assert "    at f ([eval]:1:" in stacks[0]["message"]
    assert not any(r["message"].startswith("    at ") for r in node)  # no frame alone


COUNTER = """\
import os, sys, time
me = os.environ["CORRAL_INSTANCE"]
for i in range(5):
    print(f"{me} line {i}", flush=True)
    time.sleep(0.05)  # most likely read one by one: records of distinct times
"""


def test_names_tail_until_and_bad_input(project: Project) -> None:
    project.file("counter.py", COUNTER)
    project.write("""
        name: names
        agents:
          parser:
            command: python3 counter.py
            replicas: 2
            restart: "no"
          fetcher:
            command: python3 counter.py
            restart: "no"
          quiet:
            command: "true"
            restart: "no"
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()) and len(r) == 4)
    two = json_records(project, "parser.2")
    assert [r["message"] for r in two] == [f"parser.2 line {i}" for i in range(5)]
    mixed = {r["instance"] for r in json_records(project, "parser.1", "fetcher")}
    assert mixed == {"parser.1", "fetcher.1"}
    tail = json_records(project, "--tail", "2")  # per agent, as compose's
    assert sorted(r["agent"] for r in tail) == ["fetcher", "fetcher", "parser", "parser"]
    assert {r["message"] for r in tail if r["agent"] == "fetcher"} == {
        "fetcher.1 line 3", "fetcher.1 line 4"}

    fetched = json_records(project, "fetcher")
    first, last = fetched[0]["timestamp"], fetched[-1]["timestamp"]
    until = json_records(project, "fetcher", "--until", first)
    assert until == [r for r in fetched if r["timestamp"] <= first] and until[0] == fetched[0]
    since = json_records(project, "fetcher", "--since", last)
    assert since == [r for r in fetched if r["timestamp"] >= last] and since[-1] == fetched[-1]

    assert project.corral("logs", "quiet").stdout == ""  # declared, silent: not unknown
    unknown = project.corral("logs", "parser.7", check=False)
    assert unknown.returncode == 4 and "(did you mean 'parser." in unknown.stderr
    typo = project.corral("logs", "parsr", check=False)
    assert typo.returncode == 4 and "did you mean 'parser'" in typo.stderr
    assert (typo.stdout, len(typo.stderr.splitlines())) == ("", 1)
    regex = project.corral("logs", "--grep", "[", check=False)
    assert regex.returncode == 2 and "not a valid regular expression" in regex.stderr
    when = project.corral("logs", "--since", "10x", check=False)
    assert when.returncode == 2 and "10m" in when.stderr and "ISO-8601" in when.stderr
    for bad in (regex, when):
        assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_logs_stay_readable_after_down_with_old_numeric_files(project: Project) -> None:
    project.file("counter.py", COUNTER)
    project.write("""
        name: afterdown
        agents:
          parser:
            command: python3 counter.py
            replicas: 2
            restart: "no"
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()) and len(r) == 2)
    daemon = project.daemon_pid()
    project.corral("down")
    assert daemon is not None and not running(daemon)  # what follows reads the files
    records = json_records(project)
    assert len(records) == 10
    first = records[0]["timestamp"]
    # a file written before the RFC 3339 form: unix seconds, read and filtered with the rest
    from datetime import datetime

    seconds = datetime.fromisoformat(first).timestamp()
    old = [{"timestamp": seconds + d, "agent": "legacy", "instance": "legacy.1",
            "stream": "stdout", "level": "info", "message": f"legacy {d}"} for d in (-1, 3600)]
    (project.state_dir / "logs" / "legacy.log").write_text(
        "".join(json.dumps(r) + "\n" for r in old))
    merged = [r["message"] for r in json_records(project)]
    assert merged[0] == "legacy -1" and merged[-1] == "legacy 3600" and len(merged) == 12
    up_to_first = [r["message"] for r in json_records(project, "--until", first)]
    assert up_to_first[0] == "legacy -1" and "legacy 3600" not in up_to_first
    text = project.corral("logs", "parser.2", "--tail", "1", "--no-color").stdout
    assert text == "parser.2 | parser.2 line 4\n"
    stamped = project.corral("logs", "legacy", "-t", "--no-color").stdout.splitlines()
    assert RFC3339.search(stamped[0]) and stamped[0].endswith(" legacy -1")
    assert project.corral("logs", "parser.9", check=False).returncode == 4


FOLLOWED = """\
import os, time
print("before follow", flush=True)
while not os.path.exists("go"):
    time.sleep(0.05)
print("after follow", flush=True)
time.sleep(3600)
"""


def test_follow_prints_the_history_first_then_the_new_records(project: Project) -> None:
    project.file("followed.py", FOLLOWED)
    project.write("""
        name: follow
        agents:
          waiter:
            command: python3 followed.py
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: any(x["message"] == "before follow"
                                   for x in project.records("waiter")), what="the first line")
    proc = subprocess.Popen([*CORRAL, "-f", str(project.manifest), "logs", "-f", "--no-color"],
                            stdout=subprocess.PIPE, text=True, cwd=project.root)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "waiter.1 | before follow\n"  # the history first
        (project.root / "go").write_text("")
        assert proc.stdout.readline() == "waiter.1 | after follow\n"  # then what comes
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    only_new = subprocess.run(
        [*CORRAL, "-f", str(project.manifest), "logs", "--tail", "1", "--json"],
        capture_output=True, text=True, cwd=project.root, check=True).stdout
    assert json.loads(only_new)["message"] == "after follow"

"""Shared helpers for the benchmark: /proc scanning, timing, cleanup.

Every process the harness starts gets ``BENCH_TAG=<tag>`` in its environment, and every child
command carries the tag in its argv (``/bin/sleep 3600.<tag>``). That is how children are
counted and how anything left over is found and killed by PID at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
VENV_BIN = WORK / "venv" / "bin"
NPM_BIN = WORK / "npm" / "node_modules" / ".bin"
REPO = BENCH.parent
PY = "/root/.pyenv/versions/3.11.7/bin/python3.11"
if not os.path.exists(PY):  # pragma: no cover - other machines
    import sys

    PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ScenarioError(Exception):
    """A scenario failed for one tool; the message is the one-line reason."""


class NotApplicable(Exception):
    """The tool cannot do what the scenario measures (e.g. has no status command)."""


def make_tag() -> str:
    return f"{os.getpid()}{int(time.time() * 1000) % 10**6:06d}"


def idle_cmd(tag: str) -> list[str]:
    return ["/bin/sleep", f"3600.{tag}"]


def spam_cmd(tag: str, lines: int) -> list[str]:
    return [PY, "-S", str(BENCH / "spammer.py"), str(lines), tag]


# ---------------------------------------------------------------- /proc


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> list[str]:
    return [a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a]


def ppid_of(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    return int(stat[stat.rfind(b")") + 2 :].split()[1]) if stat else 0


def alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def tagged(tag: str) -> list[int]:
    """Every live process of this run: tag in argv or BENCH_TAG in environ."""
    argv_mark, env_mark = tag.encode(), f"BENCH_TAG={tag}".encode()
    me = os.getpid()
    found = []
    for pid in pids():
        if pid == me:
            continue
        if argv_mark in _read(f"/proc/{pid}/cmdline") or env_mark in _read(f"/proc/{pid}/environ"):
            found.append(pid)
    return found


def is_child(argv: list[str], tag: str) -> bool:
    """A fleet child itself (not a shell or other wrapper that merely mentions the tag)."""
    if argv[:2] == ["/bin/sleep", f"3600.{tag}"]:
        return True
    return argv[:1] == [PY] and argv[2:3] == [str(BENCH / "spammer.py")] and tag in argv


def children(tag: str) -> list[int]:
    """Live fleet children, found by a /proc scan."""
    mark = tag.encode()
    out = []
    for pid in pids():
        raw = _read(f"/proc/{pid}/cmdline")
        if mark in raw and is_child(cmdline(pid), tag) and alive(pid):
            out.append(pid)
    return out


def descendants(roots: Iterable[int]) -> set[int]:
    parent = {p: ppid_of(p) for p in pids()}
    result = {r for r in roots if r in parent}
    grew = True
    while grew:
        new = {p for p, pp in parent.items() if pp in result and p not in result}
        result |= new
        grew = bool(new)
    return result


def supervisor_pids(roots: Iterable[int], tag: str) -> list[int]:
    """The tool's own processes: roots + descendants, minus the fleet children's subtrees.

    Wrappers between the tool and a child (e.g. honcho's `sh -c`) count as the tool's.
    """
    tree = descendants(roots)
    kids = descendants(p for p in tree if is_child(cmdline(p), tag))
    return sorted(p for p in tree - kids if alive(p))


def rss_mb(pid_list: Iterable[int]) -> tuple[float, float]:
    """(sum of VmRSS, sum of Pss) in MB."""
    rss = pss = 0
    for pid in pid_list:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith(b"VmRSS:"):
                rss += int(line.split()[1])
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith(b"Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def cpu_ticks(pid_list: Iterable[int]) -> int:
    total = 0
    for pid in pid_list:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat[stat.rfind(b")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


# ---------------------------------------------------------------- control


def kill_pids(pid_list: Iterable[int], sig: int = signal.SIGKILL) -> int:
    n = 0
    for pid in pid_list:
        try:
            os.kill(pid, sig)
            n += 1
        except (ProcessLookupError, PermissionError):
            pass
    return n


def sweep(tag: str, rounds: int = 5) -> int:
    """SIGKILL every process of this run by PID; return how many were killed."""
    killed = 0
    for _ in range(rounds):
        left = tagged(tag)
        if not left:
            break
        killed += kill_pids(left)
        time.sleep(0.2)
    return killed


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``pred`` until it returns a truthy value; raise ScenarioError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScenarioError(f"timeout after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 60, check: bool = True):
    """Run a tool CLI; on failure raise ScenarioError with the last line of its output."""
    try:
        res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ScenarioError(f"{Path(cmd[0]).name} {cmd[1:3]} timed out after {timeout}s") from e
    if check and res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ScenarioError(f"{Path(cmd[0]).name} exit {res.returncode}: {tail[0][:160]}")
    return res


def machine_facts() -> dict[str, str]:
    mem = next(
        (ln.split()[1] for ln in _read("/proc/meminfo").decode().splitlines() if "MemTotal" in ln),
        "0",
    )
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in _read("/proc/cpuinfo").decode().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "os": next(
            (
                ln.split("=", 1)[1].strip('"')
                for ln in _read("/etc/os-release").decode().splitlines()
                if ln.startswith("PRETTY_NAME")
            ),
            "?",
        ),
    }


def emit_block(lines: list[str], end: str, out: str | None) -> None:
    """Close a report block (``lines`` start with its begin marker), print it, and with
    ``out`` put it in that file. Each bench script owns one such block of
    docs/benchmarks.md; run.py keeps them when it rewrites the rest."""
    report = "\n".join([*lines, "", end]) + "\n"
    print(report)
    if out:
        _put_block(Path(out), report, lines[0], end)


def _put_block(path: Path, report: str, begin: str, end: str) -> None:
    """``report`` in place of the block between the markers in ``path``, else appended."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        text = head + report.rstrip("\n") + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + report
    path.write_text(text)


# ---------------------------------------------------------------- CPU of a whole run


class CpuGroup:
    """Counts all the CPU a run uses, kernel work done in its processes included: a cgroup
    made for it (v1 ``cpuacct.usage``, else cgroup2 ``cpu.stat``), which this process enters
    while it starts what is measured (its children and theirs stay in it: corral's daemon,
    its per-agent groups nested below, bwrap) and leaves before it merely polls. Needs root;
    ``CpuGroup.make()`` is None where no group can be made."""

    def __init__(self, group: str, home: str, usage: Callable[[str], int]) -> None:
        self.group, self.home, self._usage = group, home, usage

    @classmethod
    def make(cls) -> CpuGroup | None:
        for line in _read("/proc/self/mountinfo").decode().splitlines():
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup" and "cpuacct" in opts:
                return cls._at(fields[4], _own_group("cpuacct"), _v1_usage)
        for line in _read("/proc/self/mountinfo").decode().splitlines():
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return cls._at(fields[4], _own_group(""), _v2_usage)
        return None

    @classmethod
    def _at(cls, mount: str, own: str | None, usage: Callable[[str], int]) -> CpuGroup | None:
        if own is None:
            return None
        home = os.path.join(mount, own.lstrip("/"))
        group = os.path.join(mount, f"corral-bench-cpu-{os.getpid()}")
        try:
            os.makedirs(group, exist_ok=True)
        except OSError:
            return None
        return cls(group, home, usage)

    def enter(self) -> None:
        _write(os.path.join(self.group, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        _write(os.path.join(self.home, "cgroup.procs"), str(os.getpid()))

    def seconds(self) -> float:
        return self._usage(self.group) / 1e9

    def close(self) -> None:
        self.leave()
        for _ in range(50):  # corral's groups inside go once their last process is gone
            try:
                os.rmdir(self.group)
                return
            except OSError:
                time.sleep(0.1)


def _own_group(controller: str) -> str | None:
    for line in _read("/proc/self/cgroup").decode().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") if controller else names == "":
            return path
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _v1_usage(group: str) -> int:
    return int(_read(os.path.join(group, "cpuacct.usage")) or b"0")


def _v2_usage(group: str) -> int:
    for line in _read(os.path.join(group, "cpu.stat")).decode().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    return 0

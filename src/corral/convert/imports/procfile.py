"""``corral import procfile``: a Procfile (foreman, honcho, Heroku) to a corral.yaml.

Each ``name: command`` line is a process type; foreman and honcho run its command with
``sh -c``, so it becomes a process agent with ``shell: true``. They give process type N
(from 0, in file order) ``PORT=base + 100*N``, base 5000 or the env file's ``PORT``; the
manifest writes that PORT into each agent's ``env`` (and says so in a comment), so a command
that reads ``$PORT`` listens where it did. The ``$`` of a command is written ``$$``: corral
interpolates its manifest, and the variable is the shell's to expand, as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import re

from corral.convert.report import Report
from corral.errors import CorralError, UsageError

# foreman's and honcho's line: a process type, a colon, the command
LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.*?)\s*$")
AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
BASE_PORT, STEP = 5000, 100


def find(path: str | None) -> str:
    """The Procfile to read: ``path`` (a file, or a directory holding a Procfile), else the
    Procfile in this directory."""
    target = path or "Procfile"
    if os.path.isdir(target):
        target = os.path.join(target, "Procfile")
    if not os.path.isfile(target):
        raise UsageError(f"no Procfile at {target}", "give the Procfile's path: corral import "
                         "procfile PATH")
    return os.path.abspath(target)


def parse(text: str, source: str) -> list[tuple[str, str, int]]:
    """``(process type, command, line number)`` for each process line."""
    out: list[tuple[str, str, int]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if match is None or not match.group(2):
            raise CorralError(f"{source}:{number}: not a 'name: command' line: {line[:60]!r}",
                              "write each process as NAME: COMMAND (NAME of letters, digits, "
                              "'-', '_'), or start the line with # to comment it out")
        name, command = match.groups()
        if name in seen:
            raise CorralError(f"{source}:{number}: process type {name!r} again (first on "
                              f"line {seen[name]})", "give each process type one line")
        seen[name] = number
        out.append((name, command, number))
    if not out:
        raise CorralError(f"{source} has no process lines", "add NAME: COMMAND lines")
    return out


def agent_name(kind: str, taken: set[str]) -> str:
    """A valid corral agent name for process type ``kind``: lower case, no leading '-' or
    '_', at most 63 characters, a number added when two would be the same."""
    base = kind.lower().lstrip("-_")[:63] or "process"
    name, n = base, 2
    while name in taken or not AGENT_NAME.match(name):
        name = f"{base[:60]}-{n}"
        n += 1
    return name


def _env_file(procfile: str, given: str | None) -> str | None:
    if given is not None:
        if not os.path.isfile(given):
            raise UsageError(f"--env {given}: no such file", "give an existing .env file, or "
                             "leave --env out to use the .env beside the Procfile")
        return os.path.abspath(given)
    beside = os.path.join(os.path.dirname(procfile), ".env")
    return beside if os.path.isfile(beside) else None


def _base_port(env_file: str | None, report: Report) -> int:
    if env_file is None:
        return BASE_PORT
    from corral.manifest.dotenv import parse_dotenv

    values, _ = parse_dotenv(_text(env_file, "a UTF-8 .env file"))
    port = values.get("PORT")
    if port is None:
        return BASE_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        report.changed(None, "PORT", f"{env_file} sets PORT={port!r}, not a port: "
                       f"numbering from {BASE_PORT}")
        return BASE_PORT
    return int(port)


def _text(path: str, wanted: str) -> str:
    """A file's text, bounded as corral.yaml's is; one line when it cannot be had."""
    from corral.manifest import files

    try:
        return files.read_text(path)
    except files.Unreadable as exc:
        raise CorralError(f"{path}: {exc}", f"give {wanted}") from None
    except OSError as exc:
        raise CorralError(f"cannot read {path}: {exc.strerror or exc}", f"give {wanted}") \
            from None


def _q(text: str) -> str:
    """A YAML scalar: JSON's double-quoted string is one."""
    return json.dumps(text, ensure_ascii=False)


def convert(path: str, args: argparse.Namespace) -> tuple[str, Report]:
    report = Report("import procfile")
    processes = parse(_text(path, "a readable UTF-8 Procfile"), path)
    env_file = _env_file(path, getattr(args, "env_file", None))
    base = _base_port(env_file, report)
    directory = os.path.dirname(path)
    project = getattr(args, "name", None) or agent_name(os.path.basename(directory) or
                                                        "procfile", set())
    lines = [f"# Imported from {os.path.basename(path)} by corral import procfile.",
             "# Each process type runs its command with sh -c, as foreman and honcho do.",
             f"# PORT: foreman and honcho give process type N (from 0) PORT={base}+100*N;",
             "# each agent's env says it, so a command reading $PORT listens where it did.",
             f"name: {_q(project)}", "agents:"]
    taken: set[str] = set()
    for index, (kind, command, number) in enumerate(processes):
        name = agent_name(kind, taken)
        taken.add(name)
        if name != kind:
            report.changed(name, "name", f"process type {kind!r} (line {number}) is not a "
                           f"valid agent name: written as {name!r}")
        port = base + STEP * index
        lines += [f"  {name}:", f"    # line {number}: {kind}: {command}"[:100],
                  f"    command: {_q(command.replace('$', '$$'))}", "    shell: true"]
        if env_file is not None:
            relative = os.path.relpath(env_file, directory)
            lines.append(f"    env_file: {_q(relative)}")
        lines += [f"    env: {{PORT: \"{port}\"}}  # foreman's and honcho's PORT for it"]
        report.changed(name, "PORT", f"PORT={port} in its env, as foreman and honcho number "
                       "process types (the command is not changed)")
    if env_file is not None:
        report.notes.append(f"env file: {env_file} (each agent's env_file)")
    return "\n".join(lines) + "\n", report

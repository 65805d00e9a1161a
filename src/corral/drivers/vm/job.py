"""The host side of the guest contract (see ``corral.drivers.vm.init``): the run share's files.

The command, its environment and its workdir travel as a shell script on the 9p run share,
not on the kernel command line: that line is limited (2048 bytes on x86) and split on spaces
by the kernel, while a file has neither limit and ``shlex.quote`` makes any value safe.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def script(argv: Sequence[str], env: Mapping[str, str], workdir: str) -> str:
    lines = [f"cd -- {shlex.quote(workdir)} || exit 126"]
    for key, value in env.items():
        if _NAME.match(key):  # sh cannot export anything else; the host's env may have it
            lines.append(f"export {shlex.quote(f'{key}={value}')}")
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def write(share: str, *, argv: Sequence[str], env: Mapping[str, str], workdir: str,
          network: bool, root: bool = False) -> None:
    """Fill the run share afresh (a stale ``stop-signal`` must not stop the next start)."""
    os.makedirs(share, mode=0o700, exist_ok=True)
    for name in os.listdir(share):
        os.unlink(os.path.join(share, name))
    files = {"job.sh": script(argv, env, workdir), "workdir": workdir + "\n"}
    if network:
        files["net"] = "1\n"
    if root:
        files["root"] = "1\n"
    for name, text in files.items():
        fd = os.open(os.path.join(share, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)


def request_stop(share: str, sig: int) -> None:
    """Name the signal the guest's init sends the job on the power button."""
    with open(os.path.join(share, "stop-signal"), "w", encoding="utf-8") as f:
        f.write(f"{sig}\n")

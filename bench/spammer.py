"""S4 child: print LINES lines of exactly 100 bytes, then turn into an idle `sleep`.

usage: spammer.py LINES TAG

Each line is ``#SPAM# <pid:7> <seq:9> xxx…x\\n`` (100 bytes with the newline): the pid is the
child id, seq counts from 0. Output goes through one big buffer per 1000 lines. Afterwards the
process execs ``/bin/sleep 3600.<TAG>`` so that it neither exits (no restart policy kicks in,
and honcho does not stop the set) nor keeps a Python interpreter's memory.
"""

import os
import sys

lines, tag = int(sys.argv[1]), sys.argv[2]
head = b"#SPAM# %07d " % os.getpid()
tail = b" " + b"x" * 74 + b"\n"
assert len(head) + 9 + len(tail) == 100
for start in range(0, lines, 1000):
    end = min(lines, start + 1000)
    view = memoryview(b"".join(head + b"%09d" % i + tail for i in range(start, end)))
    while view:
        view = view[os.write(1, view) :]
os.execv("/bin/sleep", ["/bin/sleep", f"3600.{tag}"])

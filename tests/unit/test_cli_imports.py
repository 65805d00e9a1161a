"""What building the CLI's parser costs: every command module is imported to register its
subcommands, so what each imports at module level is paid by every command (``corral down``
had loaded asyncio and ssl through ``run_exec``, ~40 ms). Heavy modules wait for the handler
that needs them."""

from __future__ import annotations

import subprocess
import sys

# (argparse itself brings shutil, for the terminal width; textual and rich are `corral top`'s)
HEAVY = ("asyncio", "ssl", "subprocess", "pydantic", "yaml", "typing", "textual", "rich")


def test_building_the_parser_imports_no_heavy_module() -> None:
    code = ("import sys; from corral.cli import main; main.parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out

"""The public Python API: what ``corral`` exports is pinned, and importing it stays light.

After httpx's ``tests/test_exported_members.py``: a name added to or dropped from the public
surface must be a decision, so this list changes with it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import corral

PUBLIC = ["Client", "CorralError", "DaemonNotRunning", "DriverError", "Fleet", "LocalFleet",
          "ManifestError", "NotFound", "__version__", "load"]


def test_all_is_pinned() -> None:
    assert corral.__all__ == PUBLIC  # in ruff's order (RUF022): classes, dunders, functions


def test_every_public_name_resolves_to_what_it_names() -> None:
    from corral.api.client import Client
    from corral.api.local import LocalFleet
    from corral.api.protocol import Fleet
    from corral.errors import CorralError, ManifestError
    from corral.manifest.loader import load

    assert corral.Client is Client
    assert corral.LocalFleet is LocalFleet
    assert corral.Fleet is Fleet
    assert corral.CorralError is CorralError
    assert corral.ManifestError is ManifestError
    assert corral.load is load
    assert issubclass(corral.DaemonNotRunning, CorralError)
    assert issubclass(corral.DriverError, CorralError)
    assert issubclass(corral.NotFound, CorralError)
    for name in PUBLIC:
        assert getattr(corral, name) is not None
        assert name in dir(corral)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        corral.Supervisor  # noqa: B018  (internal: not part of the API)
    except AttributeError as exc:
        assert "Supervisor" in str(exc)
    else:
        raise AssertionError("corral.Supervisor must not be public")


def test_import_corral_imports_nothing_of_the_api() -> None:
    """``import corral`` is what every ``corral ps`` and the daemon pay: no module of the API,
    the manifest, pydantic or even ``typing`` until a name is used."""
    code = ("import sys, corral; "
            "print(sorted(m for m in sys.modules if m.startswith('corral.') "
            "or m.split('.')[0] in ('pydantic', 'yaml', 'typing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_readme_script_runs_through_the_public_names(tmp_path) -> None:
    """The README's example, by the public names only: load, then a LocalFleet runs it."""
    (tmp_path / "corral.yaml").write_text(
        "name: api\nagents:\n  hello:\n    command: [sh, -c, 'echo hi']\n"
        "    restart: \"no\"\n")
    manifest = corral.load(tmp_path / "corral.yaml")
    with corral.LocalFleet(str(tmp_path / ".corral")) as fleet:
        fleet.apply(manifest)
        assert fleet.wait(timeout=30)["settled"] is True
        deadline = time.monotonic() + 30
        while (states := {i["name"]: (i["state"], i["exit_code"])
                          for i in fleet.instances()}) != {"hello.1": ("exited", 0)}:
            assert time.monotonic() < deadline, states
            time.sleep(0.05)
        assert [r["message"] for r in fleet.logs(["hello"])] == ["hi"]

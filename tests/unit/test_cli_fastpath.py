"""``cli.fastpath`` is a second, hand-written grammar for ``ps`` and ``start|stop|restart``
(they must answer without argparse's import): it must read every argv it accepts exactly as
the full parser does, and leave the rest to it."""

from __future__ import annotations

import pytest

from corral.cli import fastpath, main

ACCEPTED = [
    ["ps"], ["ps", "--json"], ["ps", "web", "db"], ["ps", "--json", "web"],
    ["-f", "x.yaml", "ps"], ["--file", "x.yaml", "ps", "--json", "web.1"],
    ["start"], ["start", "web", "db.2"], ["start", "--wait"], ["start", "--wait", "web"],
    ["start", "--timeout", "7.5", "--wait", "web"], ["-f", "x.yaml", "restart", "--wait"],
    ["restart", "web", "--timeout", "3"], ["stop"], ["stop", "web", "db.1"],
    ["-f", "x.yaml", "stop", "web"],
    # the global options after the command too; the last of each wins
    ["ps", "-f", "x.yaml"], ["ps", "--json", "--file", "x.yaml", "web"],
    ["stop", "web", "-f", "x.yaml"], ["restart", "--wait", "-f", "x.yaml", "web"],
    ["--project-directory", "d", "ps"], ["ps", "--project-directory", "d", "--json"],
    ["-f", "a.yaml", "start", "-f", "b.yaml"],
    ["ps", "--status", "running"], ["ps", "--status=exited", "web"],
    ["ps", "--json", "--status", "fatal", "--status", "exited", "db.1"],
    ["ps", "web", "db", "--status", "running"], ["ps", "web", "--json"],
    ["ps", "--status", "running", "web", "-f", "x.yaml"],
]
LEFT_TO_ARGPARSE = [
    ["ps", "-h"], ["ps", "--all"], ["start", "--bogus"], ["stop", "--wait"],
    ["start", "--timeout", "soon"], ["--file=x.yaml", "ps"], ["logs"], ["up", "-d"], [],
    ["ps", "-f"], ["ps", "-f", "--json"], ["stop", "--project-directory"],
    ["ps", "--status"], ["ps", "--status", "sleeping"], ["ps", "--status=", "web"],
    ["ps", "web", "--json", "db"],
    ["ps", "web", "-f", "x.yaml", "db"], ["stop", "web", "--file", "x.yaml", "db"],
]


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_the_fast_grammar_reads_an_argv_as_the_full_parser_does(argv: list[str]) -> None:
    fast = fastpath.parse(argv)
    assert fast is not None
    full = vars(main.parser().parse_args(argv))
    assert callable(full.pop("handler"))
    assert vars(fast) == full


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_what_it_does_not_know_goes_to_the_full_parser(argv: list[str]) -> None:
    assert fastpath.parse(argv) is None


def test_the_states_ps_filters_on_are_the_instance_states() -> None:
    from corral.runtime.state import State

    assert tuple(s.value for s in State) == fastpath.STATES

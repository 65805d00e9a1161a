"""The isolation rules: facts in, a level and its reasons out; risky choices warned about."""

from __future__ import annotations

import sys

from corral.advice import rules as advice
from corral.advice.rules import AgentFacts

ALL = set(advice.LEVELS)


def facts(**kw: object) -> AgentFacts:
    base: dict[str, object] = {"name": "a", "agent_class": "io", "isolation": "process"}
    base.update(kw)
    return AgentFacts(**base)  # type: ignore[arg-type]


def test_plain_script_stays_a_process() -> None:
    a = advice.recommend(facts(), ALL)
    assert a.level == "process" and not a.differs
    assert a.reasons == ("nothing it needs calls for more than its own working directory",)


def test_python_dependencies_get_a_venv() -> None:
    a = advice.recommend(facts(python_deps=True), ALL)
    assert a.level == "venv" and a.differs
    assert "clashing" in a.reasons[0]


def test_untrusted_goes_to_the_strongest_barrier_the_host_has() -> None:
    assert advice.recommend(facts(trust="untrusted"), ALL).level == "vm"
    no_vm = advice.recommend(facts(trust="untrusted"), ALL - {"vm"})
    assert no_vm.level == "container"
    assert "vm would fit better" in no_vm.notes[0]
    only_sandbox = advice.recommend(facts(trust="untrusted"), {"process", "venv", "sandbox"})
    assert only_sandbox.level == "sandbox"


def test_kernel_needs_and_other_systems() -> None:
    assert advice.recommend(facts(kernel=True), ALL).level == "vm"
    assert advice.recommend(facts(os="centos:7"), ALL).level == "container"
    assert advice.recommend(facts(os="windows"), ALL).level == "vm"
    assert advice.recommend(facts(system_packages=("libgdal",)), ALL).level == "container"


def test_ai_agents_and_exposed_agents_are_confined() -> None:
    assert advice.recommend(facts(agent_class="ai"), ALL).level == "container"
    assert advice.recommend(facts(agent_class="ai"), ALL - {"container"}).level == "sandbox"
    exposed = advice.recommend(facts(exposed=True, credentials=("AWS_SECRET_ACCESS_KEY",)), ALL)
    assert exposed.level == "sandbox"
    assert any("cloud credentials" in r for r in exposed.reasons)


def test_every_rule_that_applies_is_a_reason() -> None:
    a = advice.recommend(facts(trust="untrusted", python_deps=True, gpu=True), ALL)
    assert a.level == "vm"
    assert len(a.reasons) == 2  # untrusted and deps; the catch-all only stands alone
    assert any("GPU" in n for n in a.notes)


def test_warnings_for_risky_choices_only() -> None:
    assert advice.warnings(facts()) == []
    assert "untrusted agent at process level" in advice.warnings(facts(trust="untrusted"))[0]
    risky = facts(isolation="venv", exposed=True, credentials=("AWS_ACCESS_KEY_ID", "DB_PW"))
    (line,) = advice.warnings(risky)
    assert "holding AWS_ACCESS_KEY_ID at venv level" in line
    assert advice.warnings(facts(isolation="sandbox", trust="untrusted", exposed=True,
                                 network="host", credentials=("AWS_ACCESS_KEY_ID",))) == []


def test_measure_runs_the_level_and_reports_failures() -> None:
    ok = advice.measure(advice.Probe("process", [sys.executable, "-c", "pass"]), runs=2)
    assert ok.available and ok.start_ms is not None and ok.start_ms > 0
    missing = advice.measure(advice.Probe("vm", None, "qemu-system-x86_64 not found"))
    assert not missing.available and missing.detail == "qemu-system-x86_64 not found"
    failing = advice.measure(advice.Probe("sandbox", ["sh", "-c", "echo nope >&2; exit 1"]))
    assert not failing.available and failing.detail == "failed: nope"


def test_when_nothing_wanted_is_here_the_best_fit_is_still_named() -> None:
    a = advice.recommend(facts(os="centos:7"), {"process", "venv"})
    assert a.level == "container"
    assert "none of container, vm works on this host" in a.notes[0]


def test_a_sandboxed_io_agent_is_told_its_network_is_declared_not_defaulted() -> None:
    warned = advice.warnings(facts(isolation="sandbox", agent_class="io"))
    assert warned == [f"a: {advice.NO_NETWORK}"]
    assert advice.warnings(facts(isolation="sandbox", agent_class="io", network="host")) == []
    assert advice.warnings(facts(isolation="sandbox", agent_class="compute")) == []
    exposed = advice.recommend(facts(exposed=True), {"process", "sandbox"})
    assert exposed.level == "sandbox" and advice.NO_NETWORK in exposed.notes
    declared = advice.recommend(facts(exposed=True, network="host"), {"process", "sandbox"})
    assert advice.NO_NETWORK not in declared.notes

def test_each_level_states_its_trust_boundary_and_a_shared_identity_is_said() -> None:
    assert set(advice.BOUNDARY) == set(advice.LEVELS)
    assert "no wall" in advice.BOUNDARY["process"]
    assert "unprivileged uid" in advice.BOUNDARY["sandbox"]
    shared = advice.recommend(facts(), ALL)
    assert any("corral's own user" in n and "user:" in n for n in shared.notes)
    own = advice.recommend(facts(user="alice"), ALL)
    assert not any("corral's own user" in n for n in own.notes)
    boxed = advice.recommend(facts(agent_class="ai", isolation="sandbox"), ALL)
    assert not any("corral's own user" in n for n in boxed.notes)

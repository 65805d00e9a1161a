"""The small parts the drivers share, without a process: ``driver_errors`` (errors mapped in
one place, the agent named once), the container prerequisites' forget-and-retry rule, and the
runtime's dependency verdicts."""

from __future__ import annotations

import errno

import pytest

from corral.drivers.base import Handle, Task, driver_errors
from corral.drivers.container.engine import EngineError
from corral.drivers.container.prereqs import Prereqs
from corral.drivers.container.runargs import RunSpec
from corral.errors import CorralError, DriverError
from corral.manifest.spec import Agent
from corral.runtime.dependencies import condition
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot, public


def _task(agent: str = "web") -> Task:
    return Task(project="p", agent=agent, instance=f"{agent}.1", index=1,
                spec=Agent(command=["true"]), workdir="/", run_dir="/r", cache_dir="/c",
                env={})


def test_an_error_gets_the_agent_named_once_and_keeps_its_fix() -> None:
    with pytest.raises(DriverError) as got, driver_errors(_task()):
        raise CorralError("podman is not installed", "apt-get install podman")
    assert (got.value.problem, got.value.fix) == ("agents.web: podman is not installed",
                                                  "apt-get install podman")
    for named in ("agents.web: no such image", "agents.web.resources.cpus: too many"):
        with pytest.raises(DriverError) as got, driver_errors(_task()):
            raise CorralError(named, "fix it")
        assert got.value.problem == named  # already says whose: not named twice
    with pytest.raises(DriverError) as got, driver_errors(_task()):
        raise CorralError("agents.webber: not this one's", "")
    assert got.value.problem == "agents.web: agents.webber: not this one's"


def test_a_driver_error_that_names_the_agent_passes_as_it_is() -> None:
    raised = DriverError("agents.web: command not found: x", "install x")
    with pytest.raises(DriverError) as got, driver_errors(_task()):
        raise raised
    assert got.value is raised


def test_what_was_being_done_and_a_fix_of_the_caller_replace_the_engine_s_own() -> None:
    with pytest.raises(DriverError) as got, driver_errors(
            _task(), "podman could not start the container", only=EngineError,
            fix="fix the agent's command"):
        raise EngineError("no such file", "the engine's own advice")
    assert str(got.value) == ("agents.web: podman could not start the container: no such "
                              "file: fix the agent's command")
    other = CorralError("agents.web: something else", "x")
    with pytest.raises(CorralError) as passed, driver_errors(_task(), "doing",
                                                             only=EngineError):
        raise other
    assert passed.value is other  # only what ``only`` names is mapped


def test_an_os_error_is_mapped_only_where_the_host_is_named() -> None:
    with pytest.raises(OSError), driver_errors(_task()):  # the runner retries it
        raise OSError(errno.EMFILE, "Too many open files")
    with pytest.raises(DriverError) as got, driver_errors(
            _task(), host=("cannot make its cgroup", "check the cgroup")):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert got.value.problem == ("agents.web: cannot make its cgroup: [Errno 13] Permission "
                                 "denied")
    assert got.value.fix == "check the cgroup"


def _spec(network: str = "corral-p", volumes: tuple[str, ...] = ()) -> RunSpec:
    return RunSpec(name="c", image="img", argv=("true",), labels={}, env={},
                   network=network, alias="web", volumes=volumes)


def test_a_refused_create_forgets_what_it_relied_on_and_retries_only_then() -> None:
    known = Prereqs()
    assert not known.forget("podman", _spec())  # nothing known: a retry changes nothing
    known.networks.add(("podman", "corral-p"))
    known.volumes |= {("podman", "v1"), ("docker", "v1")}
    known.present.add(("podman", "img"))
    assert known.forget("podman", _spec(volumes=("v1",)))
    assert known.networks == set() and known.volumes == {("docker", "v1")}
    assert known.present == set()
    known.present.add(("podman", "img"))
    assert known.forget("podman", _spec(network="none"))  # the image alone was known
    assert known.present == set()


def _snap(state: State, *, health: Health = Health.NONE, exit_code: int | None = None,
          log_ready: bool = False, reason: str = "") -> Snapshot:
    return Snapshot(name="db.1", agent="db", index=1, state=state, health=health,
                    exit_code=exit_code, log_ready=log_ready, reason=reason)


def test_dependency_conditions() -> None:
    assert condition("db", "healthy", []) == "met"  # not in the fleet: nothing to wait for
    running = _snap(State.RUNNING)
    assert condition("db", "started", [running]) == "met"
    assert condition("db", "healthy", [running]) == "pending"
    assert condition("db", "healthy", [_snap(State.RUNNING, health=Health.HEALTHY)]) == "met"
    assert condition("db", "log_ready", [_snap(State.RUNNING, log_ready=True)]) == "met"
    assert condition("db", "healthy", [running, _snap(State.STARTING)]) == "pending"
    assert condition("db", "started", [_snap(State.FATAL, reason="boom")]) == (
        "dependency db failed: boom")
    assert condition("db", "healthy", [_snap(State.EXITED, reason="exited with code 0")]) == (
        "dependency db ended before it was healthy (exited with code 0)")
    assert condition("db", "log_ready", [_snap(State.STOPPED, reason="stopped")]) == (
        "dependency db ended before its ready line (stopped)")
    assert condition("db", "completed", [_snap(State.EXITED, exit_code=1)]) == "met"
    assert condition("db", "completed_successfully",
                     [_snap(State.EXITED, exit_code=1, reason="exited with code 1")]) == (
        "dependency db did not complete successfully (exited with code 1)")


def test_the_public_view_shows_uptime_only_while_running_and_the_limits_of_its_handle() -> None:
    handle = Handle(driver="process", instance="db.1", pid=7, started_at=100.0,
                    data={"limits": "cgroup v2"})
    row = public(Snapshot(name="db.1", agent="db", index=1, state=State.RUNNING,
                          health=Health.NONE, pid=7, started_at=100.0, handle=handle), 112.5)
    assert (row["uptime"], row["limits"], row["state"], row["pid"]) == (
        12.5, "cgroup v2", "running", 7)
    row = public(_snap(State.EXITED, exit_code=0), 112.5)
    assert (row["uptime"], row["limits"], row["exit_code"]) == (None, None, 0)

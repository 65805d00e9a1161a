"""`corral recommend` and the warnings `corral up` prints once, through the real CLI."""

from __future__ import annotations

import json

from tests.e2e.conftest import Project


def test_recommend_explains_each_agent_and_measures_the_host(project: Project) -> None:
    project.file("deps/requirements.txt", "six==1.16.0\n")
    project.write("""
        name: advise
        secrets:
          aws: {environment: AWS_SECRET_ACCESS_KEY}
        agents:
          plain: {command: sleep 1}
          deps: {command: python app.py, workdir: deps}
          shady: {command: sleep 1, trust: untrusted}
          front:
            command: sleep 1
            secrets: [{source: aws, env: AWS_SECRET_ACCESS_KEY}]
            needs: {internet_facing: true}
    """)
    out = json.loads(project.corral("recommend", "--json").stdout)
    got = {a["agent"]: a for a in out["agents"]}
    assert got["plain"]["recommended"] == "process"
    assert got["deps"]["recommended"] == "venv"
    assert got["shady"]["recommended"] in ("vm", "container", "sandbox")
    assert got["front"]["recommended"] in ("sandbox", "container")
    assert any("cloud credentials" in r for r in got["front"]["reasons"])
    levels = {lv["level"]: lv for lv in out["levels"]}
    assert levels["process"]["available"] and levels["process"]["start_ms"] > 0
    text = project.corral("recommend", "front").stdout
    assert text.startswith("front: at process; recommended")
    assert "levels on this host" in text
    # every level says what stands between its agents and the rest
    assert text.count("trust boundary: ") == 5 and "no wall" in text
    assert "runs as corral's own user" in text
    assert all(lv["boundary"] for lv in out["levels"])
    missing = project.corral("recommend", "nope", check=False)
    assert missing.returncode == 4 and "no agent named 'nope'" in missing.stderr


def test_up_warns_once_about_risky_choices_without_blocking(project: Project) -> None:
    project.write("""
        name: risky
        secrets:
          aws: {environment: AWS_SECRET_ACCESS_KEY}
        agents:
          front:
            command: sleep 300
            trust: untrusted
            secrets: [{source: aws, env: AWS_SECRET_ACCESS_KEY}]
            needs: {internet_facing: true}
    """)
    up = project.corral("up", "-d", env={"AWS_SECRET_ACCESS_KEY": "x"})
    warnings = [line for line in up.stderr.splitlines() if "warning" in line]
    assert any("untrusted agent at process level" in w for w in warnings), up.stderr
    assert any("holding AWS_SECRET_ACCESS_KEY at process level" in w for w in warnings)
    assert len(warnings) == len(set(warnings))
    assert project.ps()["front.1"]["state"] in ("running", "starting")


def test_recommend_and_up_say_a_sandbox_has_no_network_unless_declared(
        project: Project) -> None:
    project.write("""
        name: netless
        agents:
          scraper: {command: sleep 300, isolation: sandbox}
          fetcher: {command: sleep 300, isolation: sandbox, network: host}
          front: {command: sleep 1, needs: {internet_facing: true}}
    """)
    text = project.corral("recommend").stdout
    assert "front: at process; recommended sandbox" in text, text
    assert "a sandbox has no network unless it declares one" in text, text
    up = project.corral("up", "-d")
    said = [line for line in up.stderr.splitlines() if "no network" in line]
    assert len(said) == 1 and said[0].startswith("corral: warning: scraper: "), up.stderr


def test_up_warns_of_a_secret_file_inside_a_sandbox_s_writable_workdir(
        project: Project) -> None:
    project.file("w/token.txt", "t\n")
    project.file("r/token2.txt", "t\n")
    project.write("""
        name: inside
        secrets:
          t: {file: ./w/token.txt}
          r: {file: ./r/token2.txt}
        agents:
          writer: {command: sleep 300, isolation: sandbox, workdir: w}
          reader: {command: sleep 300, isolation: sandbox, volumes: ["./r:/tmp/r:ro"]}
    """)
    up = project.corral("up", "-d")
    said = [line for line in up.stderr.splitlines() if "secret file" in line]
    assert len(said) == 1, up.stderr
    assert said[0].startswith("corral: warning: writer: the secret file ")
    assert "token.txt" in said[0] and "could move the file from under its mask" in said[0]


def test_recommend_says_of_container_and_vm_what_doctor_says(project: Project) -> None:
    """Neither claims what the tool does not do: each level's availability in `recommend`
    is its driver's in `doctor`, and its detail starts with doctor's words for it."""
    project.write("name: agree\nagents:\n  plain: {command: sleep 1}\n")
    doctor = project.corral("doctor", check=False).stdout.splitlines()
    said = {}
    for line in doctor:
        state, _, rest = line.partition(" ")
        level, _, detail = rest.strip().partition(" ")
        if state in ("ok", "--", "!!") and level in ("container", "vm"):
            said[level] = (state == "ok", detail.strip())
    assert set(said) == {"container", "vm"}, doctor
    levels = {lv["level"]: lv for lv in
              json.loads(project.corral("recommend", "--json").stdout)["levels"]}
    for level, (ok, detail) in said.items():
        assert levels[level]["available"] == ok, (level, levels[level], detail)
        assert levels[level]["detail"].startswith(detail), (levels[level]["detail"], detail)
        assert "does not drive" not in levels[level]["detail"]
        assert "no guest measured" not in levels[level]["detail"]
        if ok:  # not started to time it: said so, and where it is measured
            assert levels[level]["start_ms"] is None
            assert "not timed here" in levels[level]["detail"]

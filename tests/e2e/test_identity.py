"""Agents' identities through the real CLI and daemon: ``user:`` for process agents (the
kernel's walls between users: /proc/PID/environ, 0400 secret files, the daemon's 0600 socket)
and the unprivileged uid every sandbox run by root gets (host files closed to other users stay
closed, what it must write it still writes)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.host.bwrap import find_bwrap
from corral.ownership import identity
from corral.runtime.keeper import SecretKeeper
from tests.e2e.conftest import Project, running, tear_down
from tests.support.agentusers import open_dir

PYTHON = "/usr/bin/python3.11"  # the pyenv interpreter under /root is closed to other users

ATTACK = f"""\
#!/bin/sh
# a process agent with user: trying its neighbours; each line says yes or no
t() {{ if eval "$2" >/dev/null 2>&1; then echo "$1 yes"; else echo "$1 no"; fi; }}
echo "uid $(id -u)"
for pid in $(pgrep -f 'sleep 30[12]'); do
  t "environ-$(tr '\\0' '\\n' < /proc/$pid/cmdline | tail -1)" "cat /proc/$pid/environ"
done
t read-root-secret "cat $ROOT_SECRET"
t read-b-secret "cat $B_SECRET"
t list-secrets-root "ls /dev/shm/corral-0"
t read-own-secret "test \\"\\$(cat $CORRAL_SECRETS_DIR/mine)\\" = own-value"
t write-data "echo x > $CORRAL_STATE_DIR/kept"
t list-state "ls $STATE"
t read-store "cat $STATE/state.db"
t read-logs "cat $STATE/logs/victim.log"
{PYTHON} - <<'PY'
import os, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(os.environ["STATE"] + "/corral.sock")
    s.sendall(b"GET /v1/status HTTP/1.1\\r\\nHost: corral\\r\\n\\r\\n")
    print("socket", s.recv(12).decode())
except OSError as exc:
    print("socket refused", exc.errno)
PY
"""


@pytest.fixture
def open_project() -> Iterator[Project]:
    """A project in a dir other users may enter (the agents' workdir)."""
    root = open_dir("corral-ident-")
    p = Project(root)
    try:
        yield p
    finally:
        tear_down(p, root)
        shutil.rmtree(root, ignore_errors=True)


def _said(project: Project, agent: str) -> dict[str, str]:
    return dict(r["message"].split(" ", 1) for r in project.records(agent)
                if " " in r["message"])


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_process_agent_with_user_cannot_reach_its_neighbours_nor_the_daemon(
        open_project: Project, agent_users: tuple[Any, ...]) -> None:
    a, b = agent_users
    project = open_project
    (project.root / "attack.sh").write_text(ATTACK)
    keeper = SecretKeeper(str(project.state_dir), "idproc", lambda *_: None)
    tag_dir = keeper.root  # /dev/shm/corral-0/TAG
    root_secret = f"{tag_dir}/victim.1/pw"
    b_secret = f"{keeper.base}/corral-0.u{b.pw_uid}/{keeper.tag}/bvictim.1/pw"
    project.write(f"""
        name: idproc
        secrets:
          pw: {{command: [echo, victim-pw-1234]}}
          mine: {{command: [echo, own-value]}}
        agents:
          victim:
            command: ["sh", "-c", "exec sleep 301"]
            env: {{SECRET_ENV: root-env-5678}}
            secrets: [pw, {{source: pw, env: PW}}]
          bvictim:
            user: {b.pw_name}
            command: ["sh", "-c", "exec sleep 302"]
            secrets: [pw, {{source: pw, env: PW}}]
          attacker:
            user: {a.pw_name}
            restart: "no"
            command: [/bin/sh, attack.sh]
            env: {{ROOT_SECRET: "{root_secret}", B_SECRET: "{b_secret}",
                   STATE: "{project.state_dir}"}}
            secrets: [mine]
            depends_on: [victim, bvictim]
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["attacker.1"]["state"] == "exited", what="attacker")
    assert rows["attacker.1"]["exit_code"] == 0, project.records("attacker")
    said = _said(project, "attacker")
    assert said == {
        "uid": str(a.pw_uid),
        "environ-301": "no", "environ-302": "no",  # the kernel's ptrace access check
        "read-root-secret": "no", "read-b-secret": "no", "list-secrets-root": "no",
        "read-own-secret": "yes", "write-data": "yes",
        "list-state": "no", "read-store": "no", "read-logs": "no",
        "socket": "refused 13",  # EACCES: the socket is 0600, the daemon's
    }, project.records("attacker")
    # the victims did run with what was withheld from the attacker
    assert Path(root_secret).read_text() == "victim-pw-1234"
    assert Path(b_secret).read_text() == "victim-pw-1234"
    # the dirs: corral's 0700, each agent's its own
    assert (_mode(f"{keeper.base}/corral-0"), os.lstat(f"{keeper.base}/corral-0").st_uid) \
        == (0o700, 0)
    assert _mode(tag_dir) == 0o700 and _mode(f"{tag_dir}/victim.1") == 0o700
    own = Path(f"{keeper.base}/corral-0.u{a.pw_uid}/{keeper.tag}/attacker.1/mine")
    for path in (own.parent.parent.parent, own.parent.parent, own.parent):
        st = os.lstat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, a.pw_uid), path
    st = os.lstat(own)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o400, a.pw_uid, a.pw_gid)
    assert os.lstat(project.state_dir / "data" / "attacker" / "kept").st_uid == a.pw_uid
    project.corral("down")
    assert not own.exists() and not Path(root_secret).exists()
    assert not own.parent.parent.parent.exists()  # the user's own top dir, once empty


def test_bad_users_are_one_clear_line(open_project: Project) -> None:
    project = open_project
    project.write("""
        name: idbad
        agents:
          typo: {command: [sleep, "5"], user: "no such"}
    """)
    got = project.corral("up", "-d", check=False)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert "agents.typo.user" in got.stderr and "neither a user name" in got.stderr, got.stderr
    project.write("""
        name: idbad
        agents:
          ghost: {command: [sleep, "5"], user: corral-nobody-here}
          boxed: {command: [sleep, "5"], isolation: container, user: root}
    """)
    got = project.corral("up", "-d", check=False)
    assert got.returncode == 2 and "user: is for process, venv and sandbox" in got.stderr
    project.write("""
        name: idbad
        agents:
          ghost: {command: [sleep, "5"], user: corral-nobody-here}
    """)
    line = ("agents.ghost.user: no user 'corral-nobody-here' on this host: create it "
            "(useradd --system corral-nobody-here) or give a uid")
    got = project.corral("up", "-d", check=False)
    assert got.returncode == 1 and got.stdout.strip() == f"ghost.1: fatal ({line})", got.stdout
    assert project.ps()["ghost.1"]["reason"] == line


BOX = """\
#!/bin/sh
t() { if eval "$2" >/dev/null 2>&1; then echo "$1 yes"; else echo "$1 no"; fi; }
echo "uid $(id -u)"
t read-shadow "cat /etc/shadow"
t list-containers "ls /var/lib/containers"
t list-closed "ls /tmp/in/closed"
t write-workdir "echo x > made-here.txt"
t edit-old "echo y >> old.txt"
t write-data "echo x > $CORRAL_STATE_DIR/kept"
t write-volume "echo x > /tmp/in/shared/out.txt"
t write-tmp "echo x > /tmp/scratch"
t read-secret "test \\"$(cat /run/secrets/pw)\\" = box-pw"
t python "/usr/bin/python3 -c 1"
echo "caps $(grep CapEff /proc/self/status | cut -f2)"
"""


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed: "
                    "apt-get install bubblewrap (scripts/install.sh --test does)")
def test_a_sandbox_run_by_root_is_an_unprivileged_identity(open_project: Project) -> None:
    if os.geteuid() != 0:
        pytest.skip("the identity of a sandbox run by root (rootless: test_rootless.py)")
    project = open_project
    work = project.root / "work"
    work.mkdir()
    (work / "box.sh").write_text(BOX)
    (work / "old.txt").write_text("made by root before\n")  # an older corral's, say
    closed = project.root / "closed"
    closed.mkdir(mode=0o700)
    (closed / "f").write_text("root only")
    project.write(f"""
        name: idbox
        secrets:
          pw: {{command: [echo, box-pw]}}
        agents:
          box:
            isolation: sandbox
            restart: "no"
            workdir: work
            command: [/bin/sh, box.sh]
            volumes: ["{closed}:/tmp/in/closed:ro", "shared:/tmp/in/shared"]
            secrets: [pw]
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["box.1"]["state"] == "exited", what="box")
    assert rows["box.1"]["exit_code"] == 0, [r["message"] for r in project.records("box")]
    said = _said(project, "box")
    uid = int(said.pop("uid"))
    expected_uid = identity.dynamic(f"{project.state_dir}\0box").uid
    assert uid == expected_uid and uid in identity.DYNAMIC
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    assert said == {
        "read-shadow": "no", "list-containers": "no", "list-closed": "no",
        "write-workdir": "yes", "edit-old": "yes", "write-data": "yes", "write-volume": "yes",
        "write-tmp": "yes", "read-secret": "yes", "python": "yes",
        "caps": "0000000000000000",
    }, project.records("box")
    assert os.lstat(work / "made-here.txt").st_uid == uid
    assert os.lstat(work).st_uid == 0 and _mode(work) & 0o777 == 0o775  # ACL mask, owner kept
    assert os.lstat(project.state_dir / "data" / "box" / "kept").st_uid == uid
    keeper = SecretKeeper(str(project.state_dir), "idbox", lambda *_: None)
    box_dir = keeper.directory("box.1")
    st = os.lstat(box_dir)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o500, uid)
    st = os.lstat(f"{box_dir}/pw")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o400, uid)
    assert _mode(keeper.root) == 0o700 and os.lstat(keeper.root).st_uid == 0


def test_corral_run_and_exec_run_as_the_agents_user(
        open_project: Project, agent_users: tuple[Any, ...]) -> None:
    a, _ = agent_users
    project = open_project
    project.write(f"""
        name: idrun
        agents:
          job: {{command: [id, -u], user: {a.pw_name}, restart: "no"}}
          mine: {{command: [id, -u], restart: "no"}}
    """)
    assert project.corral("run", "job").stdout.strip() == str(a.pw_uid)
    assert project.corral("run", "mine").stdout.strip() == str(os.geteuid())
    got = project.corral("exec", "job", "--", "sh", "-c", "id -u; touch $CORRAL_STATE_DIR/x")
    assert got.stdout.strip() == str(a.pw_uid)
    assert os.lstat(project.state_dir / "data" / "job" / "x").st_uid == a.pw_uid


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed: "
                    "apt-get install bubblewrap (scripts/install.sh --test does)")
def test_a_sandbox_with_user_runs_as_that_user_and_probes_too(
        open_project: Project, agent_users: tuple[Any, ...]) -> None:
    a, _ = agent_users
    project = open_project
    (project.root / "work").mkdir()
    project.write(f"""
        name: idboxuser
        agents:
          box:
            class: service
            isolation: sandbox
            user: {a.pw_name}
            workdir: work
            command: ["sh", "-c", "id -u > mine.txt; exec sleep 300"]
            readiness: {{exec: [sh, -c, "test $$(id -u) = {a.pw_uid}"], period: 0.3s}}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["box.1"]["health"] == "healthy", what="probe as the user")
    assert (project.root / "work" / "mine.txt").read_text().strip() == str(a.pw_uid)
    assert os.lstat(project.root / "work" / "mine.txt").st_uid == a.pw_uid
    got = project.corral("exec", "box", "--", "sh", "-c", "id -u; grep CapEff /proc/self/status")
    uid, caps = got.stdout.split("\n")[:2]
    assert uid == str(a.pw_uid) and caps.split()[1] == "0000000000000000"


def test_a_user_agent_joins_its_cgroup_before_it_drops_root(
        open_project: Project, agent_users: tuple[Any, ...]) -> None:
    from corral.limits.limiter import Limiter

    if not Limiter().writable():
        pytest.skip("no writable cgroup here: limits fall back to rlimits")
    a, _ = agent_users
    project = open_project
    project.write(f"""
        name: idcg
        agents:
          capped:
            user: {a.pw_name}
            command: [sleep, "300"]
            resources: {{memory: 64M, pids: 16}}
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["capped.1"]["state"] == "running", what="capped")
    pid = rows["capped.1"]["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(a.pw_uid)] * 4  # real, effective, saved, filesystem
    assert "NoNewPrivs:\t0" in status  # a process agent is that user, as systemd's User=
    assert "/corral-idcg-" in Path(f"/proc/{pid}/cgroup").read_text()
    project.corral("stop", "capped")
    assert not running(pid)  # the group was killed as root, the agent's uid no obstacle

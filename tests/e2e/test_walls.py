"""The sandbox's walls against an agent that rearranges what it may write between two runs:
a bind source swapped for a link out of its root is refused at the restart (the instance is
fatal, one line says why, no restart loop), nothing of the host is mounted."""

from __future__ import annotations

import pytest

from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not "
                                "installed: apt-get install bubblewrap (scripts/install.sh "
                                "--test does)")

SECRET = "holder-secret-4411"


def _fatal(project: Project, name: str) -> dict[str, object]:
    rows = project.wait_for(lambda r: r[name]["state"] == "fatal", what=f"{name} fatal")
    return rows[name]


def test_a_volume_swapped_for_a_link_to_root_is_refused_at_the_restart(
        project: Project) -> None:
    """The issue's attack, exactly: ``ln -s / out`` then exit 1 under restart: on-failure."""
    (project.root / "escw" / "out").mkdir(parents=True)
    project.file("key.txt", SECRET + "\n")
    pwned = project.root / "pwned"
    project.file("escw/attack.sh", f"""\
        if [ -e first-run-done ]; then
          cat /tmp/out/dev/shm/corral-*/*/holder.1/key /tmp/out{project.root}/key.txt
          echo owned > /tmp/out{pwned} && echo WROTE-HOST
          exit 0
        fi
        touch first-run-done
        rm -rf out && ln -s / out
        exit 1
        """)
    project.write("""
        name: walls
        secrets:
          key: {file: ./key.txt}
        agents:
          holder:
            isolation: sandbox
            command: sleep 300
            secrets: [key]
          esc:
            class: compute
            isolation: sandbox
            workdir: escw
            volumes: ["./escw/out:/tmp/out"]
            restart: on-failure
            command: /bin/sh attack.sh
    """)
    project.corral("up", "-d")
    row = _fatal(project, "esc.1")
    reason = str(row["reason"])
    assert "agents.esc.volumes" in reason and "link to /" in reason and "refused" in reason, row
    assert "\n" not in reason
    assert not pwned.exists()
    said = " ".join(r["message"] for r in project.records("esc"))
    assert SECRET not in said and "WROTE-HOST" not in said
    assert row["restarts"] == 1, row  # the refused start is not retried
    out = project.corral("ps")
    assert "fatal" in out.stdout
    project.corral("down")


def test_a_workdir_swapped_by_another_agent_is_refused(project: Project,
                                                       tmp_path_factory: pytest.TempPathFactory
                                                       ) -> None:
    """``inner``'s workdir lies in ``outer``'s: ``outer`` turns it into a link out of the
    project while ``inner`` runs; ``inner``'s restart does not get the other dir."""
    outside = tmp_path_factory.mktemp("outside")
    (project.root / "a" / "b").mkdir(parents=True)
    project.write("""
        name: walls
        agents:
          outer:
            class: compute
            isolation: sandbox
            workdir: a
            command: ["sh", "-c", "sleep 0.5; mv b b.real && ln -s OUTSIDE b"]
          inner:
            class: compute
            isolation: sandbox
            workdir: a/b
            restart: on-failure
            command: ["sh", "-c", "test -e ran && echo x > pwned; touch ran; sleep 2; exit 1"]
    """.replace("OUTSIDE", str(outside)))
    project.corral("up", "-d")
    row = _fatal(project, "inner.1")
    assert "agents.inner.workdir" in str(row["reason"]), row
    assert "outside" in str(row["reason"]) and "refused" in str(row["reason"]), row
    assert not (outside / "pwned").exists() and not (outside / "ran").exists()
    assert (project.root / "a" / "b.real" / "ran").exists()
    project.corral("down")


def test_a_data_dir_swapped_through_a_volume_is_refused(
        project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Corral's state dir is hidden from every sandbox; a manifest that gives one agent the
    data dirs as a volume lets it swap another's: that one's restart is refused."""
    outside = tmp_path_factory.mktemp("outside")
    (project.root / ".corral" / "data").mkdir(parents=True)
    project.write("""
        name: walls
        agents:
          swapper:
            class: compute
            isolation: sandbox
            volumes: ["./.corral/data:/tmp/d"]
            command: ["sh", "-c", "sleep 0.5; mv /tmp/d/victim /tmp/d/v.real &&
                      ln -s OUTSIDE /tmp/d/victim"]
          victim:
            class: compute
            isolation: sandbox
            restart: on-failure
            command: ["sh", "-c", "cd $$CORRAL_STATE_DIR; test -e ran && echo x > pwned;
                      touch ran; sleep 2; exit 1"]
    """.replace("OUTSIDE", str(outside)))
    project.corral("up", "-d")
    row = _fatal(project, "victim.1")
    assert "agents.victim.data dir" in str(row["reason"]), row
    assert not (outside / "pwned").exists()
    project.corral("down")


def test_a_sandbox_of_class_io_has_no_network_unless_it_declares_host(
        project: Project) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    reach = ["/bin/bash", "-c", f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && "
             "echo reached || echo unreachable"]
    project.write(f"""
        name: net
        agents:
          quiet: {{class: io, isolation: sandbox, restart: "no", command: {reach!r}}}
          chatty: {{class: io, isolation: sandbox, restart: "no", network: host,
                    command: {reach!r}}}
    """.replace("'", '"'))
    try:
        project.corral("up", "-d")
        project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()),
                         what="both agents")
    finally:
        listener.close()
    assert [r["message"] for r in project.records("quiet")] == ["unreachable"]
    assert [r["message"] for r in project.records("chatty")] == ["reached"]
    shown = project.corral("config").stdout
    assert "network: host" in shown
    project.corral("down")


PEEK_PROJECT = """\
#!/bin/bash
t() { if eval "$2" >/dev/null 2>&1; then echo "$1 yes"; else echo "$1 no"; fi; }
t run-own-code "test -x ./tool.sh && ./tool.sh | grep -q tool-ran"
t read-manifest "grep -q name corral.yaml"
t list-secret "cat secrets/b | grep -q ."
t read-env-file "grep -q . agent.env"
t read-dotenv "grep -q . .env"
t read-own-file "grep -q readme README.txt"
t write-project "echo x > evil.txt"
t write-data "echo x > $CORRAL_STATE_DIR/kept.txt"
t read-sub-secret "grep -q . sub/token.txt"
t read-via-volume "grep -q . /tmp/sub/token.txt"
"""


def test_the_project_root_as_default_workdir_is_read_only_and_secret_files_masked(
        project: Project) -> None:
    project.file("peek.sh", PEEK_PROJECT)
    project.file("tool.sh", "#!/bin/sh\necho tool-ran\n").chmod(0o755)
    project.file("README.txt", "readme\n")
    project.file("secrets/b", "secret-b-5521\n")
    project.file("agent.env", "AGENT_KEY=envfile-7731\n")
    project.file(".env", "DOTENV=dotenv-1188\n")
    project.file("sub/token.txt", "sub-token-9090\n")
    project.write("""
        name: rootview
        secrets:
          b: {file: ./secrets/b}
          t: {file: ./sub/token.txt}
        agents:
          peek:
            class: compute
            isolation: sandbox
            env_file: agent.env
            volumes: ["./sub:/tmp/sub:ro"]
            command: /bin/bash peek.sh
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["peek.1"]["state"] == "exited", what="peek")
    assert rows["peek.1"]["exit_code"] == 0, project.records("peek")
    said = dict(r["message"].split(" ", 1) for r in project.records("peek"))
    assert said == {"run-own-code": "yes", "read-manifest": "no", "list-secret": "no",
                    "read-env-file": "no", "read-dotenv": "no", "read-own-file": "yes",
                    "write-project": "no", "write-data": "yes", "read-sub-secret": "no",
                    "read-via-volume": "no"}, said
    assert not (project.root / "evil.txt").exists()
    logged = " ".join(r["message"] for r in project.records("peek"))
    for value in ("secret-b-5521", "envfile-7731", "dotenv-1188", "sub-token-9090"):
        assert value not in logged
    project.corral("down")


def test_a_volume_naming_a_secret_file_shows_it(project: Project) -> None:
    """Masking is the default; a volume of the file itself is the manifest saying so."""
    project.file("secrets/b", "secret-b-5521\n")
    project.write("""
        name: shown
        secrets:
          b: {file: ./secrets/b}
        agents:
          reader:
            class: compute
            isolation: sandbox
            volumes: ["./secrets/b:/tmp/b:ro"]
            command: rev /tmp/b
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["reader.1"]["state"] == "exited", what="reader")
    # printed reversed: the secret itself would be redacted in any agent's records
    assert [r["message"] for r in project.records("reader")] == ["1255-b-terces"]
    project.corral("down")


def test_no_descriptor_of_a_bind_source_reaches_the_agent(project: Project) -> None:
    """bwrap closes each fd it binds: one left open would be a handle on the host's tree
    (``openat(fd, "..")``) from inside the sandbox."""
    (project.root / "w" / "out").mkdir(parents=True)
    project.file("key.txt", "k\n")
    project.write("""
        name: fds
        secrets:
          key: {file: ./key.txt}
        agents:
          lister:
            class: compute
            isolation: sandbox
            workdir: w
            secrets: [key]
            volumes: ["./w/out:/tmp/out", "named:/tmp/named"]
            command: ["sh", "-c", "for f in /proc/$$$$/fd/*; do echo $$f $$(readlink $$f); done"]
          tool:
            class: compute
            isolation: sandbox
            workdir: t
            command: ./bin/list  # its prefix is its workdir: one bind, one fd
    """)
    project.file("t/bin/list", "#!/bin/sh\nfor f in /proc/$$/fd/*; do echo $f "
                 "$(readlink $f); done\n").chmod(0o755)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()), what="both")
    script = str(project.root / "t" / "bin" / "list")  # sh reads it from an fd of its own
    for agent in ("lister", "tool"):
        fds = [r["message"].split(" ", 1) for r in project.records(agent)]
        targets = {target for _, target in fds}
        assert "/dev/null" in targets and len(fds) >= 3, fds
        assert all(t == "/dev/null" or t.endswith(".fifo") or t.startswith("pipe:")
                   or t == script for t in targets), fds  # no bind source's fd among them
    project.corral("down")


def test_a_container_volume_swapped_for_a_link_to_root_is_refused(
        project: Project, podman_engine: object) -> None:
    """The same attack at the container level: the agent owns the source's parent (a
    volume of its own), swaps the source for ``ln -s / out`` and exits 1; the engine would
    follow the link on the host at the next create. It is refused, fatal, not retried."""
    (project.root / "escw" / "out").mkdir(parents=True)
    pwned = project.root / "pwned"
    project.write(f"""
        name: ctwalls
        agents:
          esc:
            class: compute
            isolation: container
            restart: on-failure
            container: {{engine: podman, image: "localhost/corral-python:bookworm"}}
            volumes: ["./escw:/w", "./escw/out:/out"]
            command: ["sh", "-c", "if [ -e /w/first ]; then echo owned > /out{pwned}; exit 0;
                      fi; touch /w/first; rm -rf /w/out; ln -s / /w/out; exit 1"]
    """)
    try:
        project.corral("up", "-d", env={"CORRAL_CONTAINER_ENGINE": "podman"})
        row = project.wait_for(lambda r: r["esc.1"]["state"] == "fatal", timeout=90,
                               what="esc fatal")["esc.1"]
        assert "agents.esc.volumes" in str(row["reason"]), row
        assert "link to /, outside" in str(row["reason"]), row
        assert row["restarts"] == 1, row
        assert not pwned.exists()
    finally:
        project.corral("down", check=False)


def test_a_venv_swapped_through_a_volume_is_refused(
        project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cached venvs are corral's; a manifest giving an agent the cache as a volume lets
    it swap another agent's venv for a link out: that one's restart is refused."""
    outside = tmp_path_factory.mktemp("outside")
    (project.root / ".corral" / "cache" / "venvs").mkdir(parents=True)
    project.file("v/requirements.txt", "")
    project.write("""
        name: walls
        agents:
          swapper:
            class: compute
            isolation: sandbox
            volumes: ["./.corral/cache/venvs:/tmp/v"]
            command: ["sh", "-c", "sleep 1.5; for d in /tmp/v/*; do case $$d in *.real) ;;
                      *) mv $$d $$d.real && ln -s OUTSIDE $$d;; esac; done"]
          victim:
            class: compute
            isolation: sandbox
            workdir: v
            venv: {requirements: requirements.txt}
            restart: on-failure
            command: ["sh", "-c", "sleep 3; exit 1"]
    """.replace("OUTSIDE", str(outside)))
    project.corral("up", "-d")
    row = project.wait_for(lambda r: r["victim.1"]["state"] == "fatal", timeout=60,
                           what="victim fatal")["victim.1"]
    assert "agents.victim.venv" in str(row["reason"]), row
    assert "outside" in str(row["reason"]) and "refused" in str(row["reason"]), row
    project.corral("down")


def test_corral_run_of_a_sandbox_agent_gets_the_same_walls(project: Project) -> None:
    """``corral run`` builds the argv itself: its checked binds reach bwrap too."""
    project.file("secrets/b", "secret-b-5521\n")
    project.write("""
        name: runwalls
        secrets:
          b: {file: ./secrets/b}
        agents:
          job:
            class: compute
            isolation: sandbox
            command: ["sh", "-c", "cat corral.yaml secrets/b; echo x > evil || echo ro;
                      echo ok > $$CORRAL_STATE_DIR/kept && echo data"]
    """)
    done = project.corral("run", "job", check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ro", "data"], done.stdout
    assert "secret-b-5521" not in done.stdout + done.stderr
    assert not (project.root / "evil").exists()

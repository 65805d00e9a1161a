"""The one environment builder: an allow-listed base, inherit_env (names and globs, never a
credential by glob), the manifest's env on top, corral's variables last; the daemon's own
environment; what the CLI sends; what reaches a container or guest."""

from __future__ import annotations

from pathlib import Path

from corral import environ
from corral.manifest.loader import load_text

SHELL = {
    "PATH": "/usr/bin:/bin", "HOME": "/home/u", "USER": "u", "LOGNAME": "u", "SHELL": "/bin/sh",
    "LANG": "C.UTF-8", "LC_TIME": "de_DE.UTF-8", "TZ": "UTC", "XDG_RUNTIME_DIR": "/run/user/1",
    "TERM": "xterm", "SA_PW": "hunter2", "DB_PASSWORD": "pw", "GITHUB_TOKEN": "ghp",
    "HTTP_PROXY": "http://proxy:3128", "PYTHONPATH": "/src", "VIRTUAL_ENV": "/venv",
    "SSH_AUTH_SOCK": "/tmp/agent", "DOCKER_HOST": "unix:///d.sock", "MY_APP_MODE": "dev",
    "MY_APP_KEY": "k-1", "LD_PRELOAD": "/evil.so", "DISPLAY": ":0",
}


def _manifest(tmp_path: Path, text: str) -> object:
    return load_text(text, project_dir=tmp_path, environ={})


def test_the_base_is_an_allow_list() -> None:
    base = environ.clean_base(SHELL)
    assert set(base) == {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_TIME", "TZ",
                         "XDG_RUNTIME_DIR"}
    assert environ.clean_base(SHELL, terminal=True)["TERM"] == "xterm"


def test_a_missing_path_and_user_are_filled_in() -> None:
    base = environ.clean_base({"LANG": "C"})
    assert base["PATH"] == environ.DEFAULT_PATH
    assert base["HOME"] and base["USER"] and base["LOGNAME"] and base["SHELL"]


def test_the_daemon_keeps_corrals_settings_only() -> None:
    env = environ.daemon_environment({**SHELL, "UV_INDEX_URL": "https://i", "PIP_CERT": "/ca"})
    assert env["DOCKER_HOST"] == "unix:///d.sock" and env["PYTHONPATH"] == "/src"
    # what its builds (uv, npm) need to reach an index as the shell does
    assert env["HTTP_PROXY"] == "http://proxy:3128" and env["UV_INDEX_URL"] == "https://i"
    assert env["PIP_CERT"] == "/ca"
    for name in ("SA_PW", "DB_PASSWORD", "GITHUB_TOKEN", "SSH_AUTH_SOCK",
                 "MY_APP_MODE", "LD_PRELOAD", "VIRTUAL_ENV", "TERM", "DISPLAY"):
        assert name not in env, name


def test_inherit_env_names_and_globs() -> None:
    got = environ.inherited(["MY_APP_*", "HTTP_PROXY", "NOT_SET"], SHELL)
    # a glob never picks a credential-looking name (MY_APP_KEY, SA_PW: by whole words)
    assert got == {"MY_APP_MODE": "dev", "HTTP_PROXY": "http://proxy:3128"}
    every = environ.inherited(["*"], SHELL, withheld=["MY_APP_MODE"])
    assert every.keys().isdisjoint({"SA_PW", "DB_PASSWORD", "GITHUB_TOKEN", "SSH_AUTH_SOCK",
                                    "MY_APP_KEY", "MY_APP_MODE"})
    assert "PATH" in every and "DISPLAY" in every
    # an exact name is explicit: a credential too
    assert environ.inherited(["GITHUB_TOKEN", "DB_*"], SHELL) == {"GITHUB_TOKEN": "ghp"}


def test_agent_environment_layers(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, """
        name: p
        inherit_env: [LC_*, HTTP_PROXY]
        secrets:
          db: {environment: DB_PASSWORD}
        agents:
          a:
            command: [x]
            inherit_env: [PYTHONPATH, "DB_*"]
            env: {LANG: fr_FR.UTF-8, EXTRA: "1"}
    """)
    spec = manifest.agents["a"]  # type: ignore[attr-defined]
    assert spec.inherit_env == ["LC_*", "HTTP_PROXY", "PYTHONPATH", "DB_*"]
    env = environ.agent_environment(
        spec, project="p", name="a", state_dir="/s", base=SHELL, given=SHELL,
        inherit=environ.patterns(manifest, spec), withheld=environ.sources(manifest))
    assert env["LANG"] == "fr_FR.UTF-8" and env["EXTRA"] == "1"  # env wins over the base
    assert env["HTTP_PROXY"] == "http://proxy:3128" and env["PYTHONPATH"] == "/src"
    assert env["CORRAL_STATE_DIR"] == "/s/data/a" and env["CORRAL_PROJECT"] == "p"
    for name in ("SA_PW", "DB_PASSWORD", "GITHUB_TOKEN", "VIRTUAL_ENV", "TERM", "DOCKER_HOST"):
        assert name not in env, name
    sent = environ.sent_by_cli(manifest, SHELL)
    assert sent == {"DB_PASSWORD": "pw", "LC_TIME": "de_DE.UTF-8",
                    "HTTP_PROXY": "http://proxy:3128", "PYTHONPATH": "/src"}


def test_containers_and_guests_drop_host_settings_unless_named(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, """
        name: p
        agents:
          a: {command: [x], inherit_env: [PYTHONPATH], env: {HOME: /data}}
    """)
    spec = manifest.agents["a"]  # type: ignore[attr-defined]
    inner = environ.for_guest({**environ.clean_base(SHELL), "PYTHONPATH": "/src",
                               "HOME": "/data", "CORRAL_AGENT": "a"}, spec)
    assert inner == {"LANG": "C.UTF-8", "LC_TIME": "de_DE.UTF-8", "TZ": "UTC",
                     "PYTHONPATH": "/src", "HOME": "/data", "CORRAL_AGENT": "a"}


def test_bad_inherit_env_entries_are_one_line_problems(tmp_path: Path) -> None:
    import pytest

    from corral.errors import ManifestError

    with pytest.raises(ManifestError, match=r"agents.a.inherit_env: 'A B' is not a variable "
                                            r"name or a glob"):
        _manifest(tmp_path, "name: p\nagents:\n  a: {command: [x], inherit_env: ['A B']}\n")

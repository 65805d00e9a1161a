"""Secret sources, secret files and the doctor's checks, with real files and commands."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from corral import secrets
from corral.secrets import SecretError, Source


def test_environment_source() -> None:
    src = Source("db", environment="DB_PASSWORD")
    assert secrets.resolve(src, {"DB_PASSWORD": "hunter2"}) == "hunter2"
    with pytest.raises(SecretError, match=r"secret db: environment variable DB_PASSWORD is not "
                                          r"set \(export DB_PASSWORD=\.\.\."):
        secrets.resolve(src, {})


def test_file_source_drops_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert secrets.resolve(Source("pw", file=str(tmp_path / "pw")), {}) == "s3cret"
    with pytest.raises(SecretError, match="does not exist"):
        secrets.resolve(Source("pw", file=str(tmp_path / "missing")), {})


def test_env_file_source_by_key_or_name(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('API_TOKEN="tok en"\nexport OTHER=2\n')
    assert secrets.resolve(Source("API_TOKEN", env_file=str(env)), {}) == "tok en"
    assert secrets.resolve(Source("other", env_file=str(env), key="OTHER"), {}) == "2"
    with pytest.raises(SecretError, match=r"has no NOPE= line \(add it or set secrets.x.key\)"):
        secrets.resolve(Source("x", env_file=str(env), key="NOPE"), {})


def test_command_source_and_its_failures() -> None:
    env = {"PATH": "/usr/bin:/bin", "WHO": "vault"}
    assert secrets.resolve(Source("c", command=("sh", "-c", "echo from-$WHO")), env) == \
        "from-vault"
    with pytest.raises(SecretError, match=r"exited 3: locked .*run it by hand"):
        secrets.resolve(Source("c", command=("sh", "-c", "echo locked >&2; exit 3")), env)
    with pytest.raises(SecretError, match="command not found: no-such-pass-manager"):
        secrets.resolve(Source("c", command=("no-such-pass-manager", "show")), env)
    with pytest.raises(SecretError, match="printed nothing"):
        secrets.resolve(Source("c", command=("true",)), env)
    with pytest.raises(SecretError, match=r"did not finish in 0\.3s"):
        secrets.resolve(Source("c", command=("sleep", "5"), timeout=0.3), env)


def test_resolve_all_keeps_what_works_and_names_what_does_not() -> None:
    values, problems = secrets.resolve_all(
        [Source("a", environment="A"), Source("b", environment="B")], {"A": "1"})
    assert values == {"a": "1"}
    assert len(problems) == 1 and problems[0].startswith("secret b:")


def test_files_are_0400_in_a_0700_dir_and_removed(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    secrets.write_files(str(d), {"db": "pw1", "api": "k"})
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert sorted(os.listdir(d)) == ["api", "db"]
    assert stat.S_IMODE((d / "db").stat().st_mode) == 0o400
    assert (d / "db").read_text() == "pw1"
    secrets.write_files(str(d), {"db": "pw2"})  # a restart rewrites, and drops the stale
    assert os.listdir(d) == ["db"] and (d / "db").read_text() == "pw2"
    secrets.remove_files(str(d))
    assert not d.exists()


def test_secrets_root_is_a_tmpfs() -> None:
    root = secrets.secrets_root()
    if root is None:
        pytest.skip("neither /run/user/UID nor /dev/shm is a writable tmpfs on this host")
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    assert any(line.split()[1:3] == [root, "tmpfs"] for line in mounts if line)


def test_cloud_admin_keys_are_flagged_unless_temporary() -> None:
    long_lived = {"AWS_ACCESS_KEY_ID": "AKIA...", "AWS_SECRET_ACCESS_KEY": "x"}
    assert len(secrets.cloud_key_warnings(long_lived)) == 2
    assert secrets.cloud_key_warnings({**long_lived, "AWS_SESSION_TOKEN": "t"}) == []
    assert secrets.cloud_key_warnings({"AZURE_CLIENT_SECRET": "s"})[0].startswith(
        "AZURE_CLIENT_SECRET is set")


def test_world_readable_and_git_ignored(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("x")
    f.chmod(0o644)
    assert secrets.world_readable(str(f))
    f.chmod(0o600)
    assert not secrets.world_readable(str(f))
    assert secrets.git_ignored(str(f)) is None  # not in a repository
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".env").write_text("A=1\n")
    assert secrets.git_ignored(str(tmp_path / ".env")) is False
    (tmp_path / ".gitignore").write_text(".env\n")
    assert secrets.git_ignored(str(tmp_path / ".env")) is True

"""Identities and private dirs: resolution and its error lines, the dynamic uid, the setpriv
prefix, ACL grants that never follow an agent's links, and stale or planted secret dirs."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path

import pytest

from corral import paths
from corral.errors import CorralError
from corral.manifest import validation
from corral.ownership import identity, privdir

ROOT = os.geteuid() == 0


def test_a_user_is_a_name_or_a_uid() -> None:
    me = identity.resolve("0", "agents.a.user")
    assert (me.uid, me.gid, me.name) == (0, 0, "root")
    bare = identity.resolve("4000000", "agents.a.user")
    assert (bare.uid, bare.gid, bare.name) == (4000000, 4000000, "uid 4000000")
    with pytest.raises(identity.IdentityError) as got:
        identity.resolve("corral-no-such-user", "agents.a.user")
    assert str(got.value) == ("agents.a.user: no user 'corral-no-such-user' on this host: "
                              "create it (useradd --system corral-no-such-user) or give a uid")


@pytest.mark.parametrize(("value", "problem"), [
    ("two words", "neither a user name"), (True, "not a boolean"), (-1, "out of range"),
    (2**32, "out of range"), ("-rf", "neither a user name"),
])
def test_bad_user_values_are_refused_at_load(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validation.agent({"command": ["x"], "user": value})


def test_a_numeric_user_is_kept_as_text_and_containers_refuse_it() -> None:
    assert validation.agent({"command": ["x"], "user": 1000}).user == "1000"
    with pytest.raises(ValueError, match="user: is for process, venv and sandbox"):
        validation.agent({"command": ["x"], "user": "root", "isolation": "vm"})


def test_corral_not_root_cannot_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(identity.IdentityError) as got:
        identity.of("a", "process", "0", "/s")
    assert str(got.value) == ("agents.a.user: corral runs as uid 1000 and cannot switch to "
                              "root: run corral as root, or remove user:")
    # its own user is no switch; a sandbox of a non-root corral runs as corral (rootless)
    assert identity.of("a", "process", "1000", "/s") is None
    assert identity.of("a", "sandbox", None, "/s") is None


def test_defaults_process_runs_as_corral_a_root_sandbox_gets_a_stable_free_uid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert identity.of("a", "process", None, "/s") is None
    assert identity.of("a", "venv", None, "/s") is None
    first = identity.of("a", "sandbox", None, "/s")
    assert first is not None and first.dynamic and first.uid in identity.DYNAMIC
    assert first == identity.of("a", "sandbox", None, "/s")  # the same at every start
    assert first.gid == first.uid
    # a uid some account (or systemd's own dynamic user) holds is passed over
    monkeypatch.setattr(identity, "_taken", lambda uid: uid == first.uid)
    other = identity.of("a", "sandbox", None, "/s")
    assert other is not None and other.uid != first.uid


def test_the_switch_prefix() -> None:
    ident = identity.Identity(61200, 61200, "uid 61200")
    switch = identity.switch(ident, sandboxed=True)
    assert switch[0].endswith("/setpriv") and switch[-1] == "--"
    assert switch[1:-1] == ["--reuid=61200", "--regid=61200", "--clear-groups",
                            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    named = identity.Identity(5, 6, "x", groups=(7, 8))
    assert identity.switch(named, sandboxed=False)[1:-1] == ["--reuid=5", "--regid=6",
                                                             "--groups=7,8"]


def test_reachable_names_the_first_closed_dir() -> None:
    ident = identity.Identity(61201, 61201, "uid 61201")
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp is under a 0700 dir
    try:
        top.chmod(0o755)
        closed = top / "closed"
        (closed / "inner").mkdir(parents=True)
        closed.chmod(0o700)
        assert identity.reachable(str(closed / "inner" / "exe"), ident) == str(closed)
        closed.chmod(0o711)
        assert identity.reachable(str(closed / "inner" / "exe"), ident) is None
    finally:
        shutil.rmtree(top)


def _user_entries(path: Path, attr: str = "system.posix_acl_access") -> dict[int, int]:
    data = os.getxattr(path, attr, follow_symlinks=False)
    entries = [struct.unpack_from("<HHI", data, 4 + 8 * i) for i in range((len(data) - 4) // 8)]
    return {uid: perm for tag, perm, uid in entries if tag == 0x02}


@pytest.mark.skipif(not ROOT, reason="granting another uid and checking it takes root")
def test_grant_follows_no_link_and_reaches_what_was_there(tmp_path: Path) -> None:
    ident = identity.Identity(61202, 61202, "uid 61202")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "old.txt").write_text("x")
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    (work / "link").symlink_to(outside)
    (work / "dirlink").symlink_to(tmp_path)
    identity.grant(str(work), ident, "agents.a.workdir")
    for path, perm in ((work, 7), (work / "sub", 7), (work / "sub" / "old.txt", 6)):
        assert _user_entries(path) == {61202: perm}, path
    with pytest.raises(OSError):
        os.getxattr(outside, "system.posix_acl_access")  # the link's target untouched
    with pytest.raises(OSError):
        os.getxattr(tmp_path, "system.posix_acl_access")
    assert _user_entries(work, "system.posix_acl_default") == {61202: 7}  # and what comes
    (work / "later").write_text("root's, after")
    assert 61202 in _user_entries(work / "later")  # (its mask: the mode it was made with)
    assert os.lstat(work).st_uid == os.geteuid()  # the owner stays


def test_a_link_as_the_dir_to_grant_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "work").symlink_to(tmp_path / "real")
    with pytest.raises(identity.IdentityError, match="make it a directory"):
        identity.grant(str(tmp_path / "work"), identity.Identity(61203, 61203, "u"), "w")


def _make(base: Path) -> int:
    me, gid = os.geteuid(), os.getegid()
    return privdir.make_path(str(base), [("corral-x", 0o700, me, gid), ("fleet", 0o700, me, gid)])


def test_a_stale_open_secrets_dir_is_made_private(tmp_path: Path) -> None:
    (tmp_path / "corral-x" / "fleet").mkdir(parents=True, mode=0o755)
    (tmp_path / "corral-x").chmod(0o755)
    os.close(_make(tmp_path))
    assert stat.S_IMODE((tmp_path / "corral-x").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "corral-x" / "fleet").stat().st_mode) == 0o700


def test_a_planted_link_is_refused_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    (tmp_path / "corral-x").symlink_to(target)
    with pytest.raises(privdir.UnsafeDir) as got:
        _make(tmp_path)
    assert str(got.value).startswith(f"{tmp_path}/corral-x is not a directory of corral's")
    assert str(got.value).endswith(": remove it")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and not (target / "fleet").exists()


@pytest.mark.skipif(not ROOT, reason="a dir of another user's takes root to make")
def test_a_strangers_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "corral-x").mkdir()
    os.chown(tmp_path / "corral-x", 61204, 61204)
    with pytest.raises(privdir.UnsafeDir, match="belongs to uid 61204, not to corral"):
        _make(tmp_path)


def test_secret_files_never_follow_a_link_left_in_the_dir(tmp_path: Path) -> None:
    fd = _make(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("keep")
    try:
        os.symlink(outside, "pw", dir_fd=fd)
        privdir.empty(fd)  # the link is removed, not its target
        privdir.write_files(fd, {"pw": "s3"}, uid=os.geteuid(), gid=os.getegid())
    finally:
        os.close(fd)
    got = tmp_path / "corral-x" / "fleet" / "pw"
    assert got.read_text() == "s3" and stat.S_IMODE(got.lstat().st_mode) == 0o400
    assert outside.read_text() == "keep"


def test_the_socket_dir_in_tmp_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                          ) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4123456)  # a name no one else's test uses
    planted = Path("/tmp/corral-4123456")
    target = tmp_path / "t"
    target.mkdir()
    try:
        planted.symlink_to(target)
        with pytest.raises(CorralError, match="is not a directory of corral's"):
            paths.socket_path("/x" * 60)
    finally:
        planted.unlink()


def test_an_open_state_dir_left_by_an_older_corral_is_closed(tmp_path: Path) -> None:
    state = tmp_path / ".corral"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    paths.private_state_dir(str(state))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    state.chmod(0o710)  # group x alone: the mask of the ACL that lets user: agents pass
    paths.private_state_dir(str(state))
    assert stat.S_IMODE(state.stat().st_mode) == 0o710

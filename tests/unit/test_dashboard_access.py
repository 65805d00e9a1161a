"""The dashboard's door without a daemon: the token file, one-time codes and sessions, and the
assets it serves (``corral.api.dashboard``, ``corral.web``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral import web
from corral.api.dashboard import CODE_TTL, MAX_CODES, SESSION_TTL, Access, load_token
from corral.errors import CorralError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_is_made_once_mode_0600_and_kept(tmp_path: Path) -> None:
    token = load_token(str(tmp_path))
    path = tmp_path / "dashboard.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token) >= 32 and load_token(str(tmp_path)) == token


def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    load_token(str(tmp_path))
    os.chmod(tmp_path / "dashboard.token", 0o644)
    with pytest.raises(CorralError, match="may be read by others") as caught:
        load_token(str(tmp_path))
    assert "rm " in caught.value.fix


def test_a_token_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("x" * 40)
    os.symlink(tmp_path / "elsewhere", tmp_path / "dashboard.token")
    with pytest.raises(OSError):
        load_token(str(tmp_path))


def test_a_code_opens_one_session_and_dies() -> None:
    clock = Clock()
    access = Access("t" * 43, clock)
    code = access.issue()
    session = access.redeem(code)
    assert session is not None and access.admits(f"Bearer {session}")
    assert access.redeem(code) is None
    assert access.redeem("never-issued") is None


def test_codes_and_sessions_expire() -> None:
    clock = Clock()
    access = Access("t" * 43, clock)
    late = access.issue()
    clock.now += CODE_TTL + 1
    assert access.redeem(late) is None
    session = access.redeem(access.issue())
    clock.now += SESSION_TTL - 1
    assert access.admits(f"Bearer {session}")
    clock.now += 2
    assert not access.admits(f"Bearer {session}")


def test_only_a_bearer_of_the_token_or_a_session_is_admitted() -> None:
    access = Access("s3cret-token-of-the-project-0123456789abc", Clock())
    assert access.admits("Bearer s3cret-token-of-the-project-0123456789abc")
    assert access.admits("bearer  s3cret-token-of-the-project-0123456789abc")
    for wrong in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic s3cret-token-of-the-project-0123456789abc",
        "s3cret-token-of-the-project-0123456789abc",
        "Bearer s3cret",
    ):
        assert not access.admits(wrong), wrong


def test_a_flood_of_codes_keeps_the_newest_within_the_bound() -> None:
    access = Access("t" * 43, Clock())
    codes = [access.issue() for _ in range(MAX_CODES + 10)]
    assert access.redeem(codes[0]) is None
    assert access.redeem(codes[-1]) is not None
    assert len(access._codes) <= MAX_CODES


def test_assets_are_plain_files_of_the_package() -> None:
    names = web.names()
    assert {"index.html", "app.js", "api.js", "style.css"} <= set(names)
    page = web.asset("index.html")
    assert page is not None and page[1].startswith("text/html")
    script = web.asset("app.js")
    assert script is not None and script[1].startswith("text/javascript")
    for name in ("../paths.py", "/etc/passwd", ".hidden.js", "", "__init__.py", "static"):
        assert web.asset(name) is None, name

"""The resolver every bind source goes through: links and ``..`` may move within the root,
never out of it, and what it returns is the inode it checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.drivers.base import Task
from corral.drivers.container import runargs
from corral.drivers.host.beneath import Escape, link_free, open_beneath, path_of, root_for
from corral.errors import DriverError
from corral.manifest.spec import Agent, Volume


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    (tmp_path / "root" / "a" / "b" / "file").write_text("in\n")
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def _resolved(root: Path, path: str) -> str:
    fd = open_beneath(str(root), path)
    try:
        return path_of(fd)
    finally:
        os.close(fd)


def test_a_plain_path_resolves_to_itself(root: Path) -> None:
    assert _resolved(root, "a/b") == str(root / "a" / "b")
    assert _resolved(root, str(root / "a" / "b" / "file")) == str(root / "a" / "b" / "file")
    assert _resolved(root, str(root)) == str(root)


def test_dotdot_within_the_root_is_fine_and_above_it_refused(root: Path) -> None:
    assert _resolved(root, "a/b/../b/./file") == str(root / "a" / "b" / "file")
    with pytest.raises(Escape, match="climbs out"):
        open_beneath(str(root), "a/../../outside")


def test_links_that_stay_inside_are_followed(root: Path) -> None:
    (root / "rel").symlink_to("a/b")
    (root / "a" / "up").symlink_to("../a/b/file")
    (root / "abs").symlink_to(root / "a")
    assert _resolved(root, "rel/file") == str(root / "a" / "b" / "file")
    assert _resolved(root, "a/up") == str(root / "a" / "b" / "file")
    assert _resolved(root, "abs/b") == str(root / "a" / "b")


def test_links_that_leave_the_root_are_refused(root: Path) -> None:
    (root / "a" / "out").symlink_to("/")
    (root / "a" / "sneaky").symlink_to("../../outside")
    (root / "a" / "absdot").symlink_to(f"{root}/../outside")
    with pytest.raises(Escape, match=r"link to /, outside"):
        open_beneath(str(root), "a/out")
    with pytest.raises(Escape, match="climbs out"):
        open_beneath(str(root), "a/sneaky")
    with pytest.raises(Escape, match=r"absdot is a link to .*, outside"):
        open_beneath(str(root), "a/absdot")


def test_a_link_in_the_middle_is_checked_too(root: Path) -> None:
    (root / "mid").symlink_to(root.parent / "outside")
    with pytest.raises(Escape, match="mid is a link to"):
        open_beneath(str(root), "mid/anything")


def test_a_loop_is_refused(root: Path) -> None:
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")
    with pytest.raises(Escape, match="loop"):
        open_beneath(str(root), "x")


def test_a_missing_path_is_an_os_error(root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_beneath(str(root), "a/nothing")


def test_a_root_reached_through_a_link_is_trusted_and_its_canonical_name_accepted(
        root: Path) -> None:
    alias = root.parent / "alias"
    alias.symlink_to(root)
    (root / "canon").symlink_to(root / "a")  # an absolute link by the canonical name
    (root / "given").symlink_to(alias / "a")  # and by the spelling the manifest gave
    assert _resolved(alias, "canon/b") == str(root / "a" / "b")
    assert _resolved(alias, "given/b") == str(root / "a" / "b")


def test_the_fd_is_what_was_checked_even_if_the_path_is_swapped_after(root: Path) -> None:
    fd = open_beneath(str(root), "a/b")
    try:
        os.rename(root / "a" / "b", root / "a" / "moved")
        (root / "a" / "b").symlink_to("/")
        assert path_of(fd) == str(root / "a" / "moved")
        assert os.listdir(f"/proc/self/fd/{fd}") == ["file"]
    finally:
        os.close(fd)


def test_the_root_of_a_path_is_the_outermost_known_one() -> None:
    roots = ["/p", "/p/w", "/s/data"]
    assert root_for("/p/w/out", roots) == "/p"
    assert root_for("/s/data/x", roots) == "/s/data"
    assert root_for("/elsewhere/v", roots) == "/elsewhere/v"


def test_a_canonical_path_is_link_free_until_a_component_is_swapped(root: Path) -> None:
    path = str(root / "a" / "b")
    assert link_free(path)
    os.rename(root / "a", root / "a.real")
    (root / "a").symlink_to(root / "a.real")
    assert not link_free(path)
    assert not link_free(str(root / "missing"))


def _task(root: Path, volumes: list[Volume]) -> Task:
    state = root / ".corral"
    (state / "data" / "w").mkdir(parents=True, exist_ok=True)
    return Task(project="p", agent="w", instance="w.1", index=1,
                spec=Agent(command=["true"], volumes=volumes, isolation="container"),
                workdir=str(root), run_dir=str(state / "run" / "w.1"),
                cache_dir=str(state / "cache"),
                env={"CORRAL_STATE_DIR": str(state / "data" / "w")}, project_dir=str(root))


def test_a_container_bind_is_given_canonical_and_refused_once_it_leaves(root: Path) -> None:
    (root / "a" / "via").symlink_to("b")
    task = _task(root, [Volume(source=str(root / "a" / "via"), target="/v")])
    binds, _ = runargs.mounts(task)
    assert binds[0].source == str(root / "a" / "b")  # the engine never follows a link
    spec = runargs.RunSpec(name="n", image="i", argv=("true",), labels={}, env={},
                           network="none", binds=binds)
    runargs.recheck(task, spec)
    os.rename(root / "a" / "b", root / "a" / "b.real")
    (root / "a" / "b").symlink_to("/")
    with pytest.raises(DriverError, match=r"became a link since it was checked: refused"):
        runargs.recheck(task, spec)
    with pytest.raises(DriverError, match=r"agents\.w\.volumes: .*b is a link to /, outside"):
        runargs.mounts(task)


def test_node_modules_is_linked_only_inside_the_root(root: Path, tmp_path: Path) -> None:
    from corral.drivers.host.node_env import link_node_modules

    built = tmp_path / "built"
    link_node_modules(str(root / "a"), str(built), str(root))
    assert os.readlink(root / "a" / "node_modules") == str(built / "node_modules")
    link_node_modules(str(root / "a"), str(built), str(root))  # again: left as it is
    (root / "pkg").symlink_to(tmp_path / "outside")
    with pytest.raises(DriverError, match=r"pkg is a link to .*outside.*: refused"):
        link_node_modules(str(root / "pkg"), str(built), str(root))
    assert not (tmp_path / "outside" / "node_modules").exists()
    (root / "a" / "b" / "node_modules").mkdir()
    with pytest.raises(DriverError, match="is not corral's"):
        link_node_modules(str(root / "a" / "b"), str(built), str(root))


def test_a_whole_home_is_never_shown_for_an_executable_found_in_it() -> None:
    from corral.drivers.host.walls import is_a_home

    env = {"HOME": "/srv/me"}
    for prefix in ("/", "/root", "/home", "/home/alice", "/srv/me"):
        assert is_a_home(prefix, env), prefix
    for prefix in ("/root/.pyenv/versions/3.12.1", "/home/alice/.local", "/usr", "/opt/py"):
        assert not is_a_home(prefix, env), prefix

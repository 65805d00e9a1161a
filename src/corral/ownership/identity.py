"""Who an agent is on the host: the uid and gid its processes run with, and what they may touch.

The kernel's own rules are the wall: a process of another uid cannot read an agent's
``/proc/PID/environ`` nor signal or trace it (ptrace access mode), cannot open its 0400 secret
files nor its 0700 dirs, and cannot connect to the daemon's 0600 socket. So:

- ``user: NAME|UID`` (process, venv, sandbox): the agent runs as that user, its secret files
  belong to it. Without it a process or venv agent runs as corral itself: no wall between it,
  its neighbours and the daemon (``corral recommend`` and the README say so).
- A sandbox without ``user:`` run by root gets an unprivileged identity of its own, the way
  systemd's ``DynamicUser=`` does: a uid from systemd's dynamic range (61184-65519) that no
  account, group or dynamic user of systemd's holds, chosen from a hash of the fleet's state
  dir and the agent's name so it is the same at every start (its files stay its own). Root in
  a user namespace would not do: bwrap run by root maps the namespace's uids onto host root,
  and file access is checked against the host's uid, so ``/etc/shadow`` (root, 0640) opens.
  The mounts are still made by bwrap as root (the agent's interpreter may sit under a 0700
  ``/root``: root can bind it, the agent then sees it in a 0755 tmpfs), then ``setpriv``
  inside the sandbox drops to the identity, with no capability, no new privileges and an
  empty bounding set before the agent's code runs.
- What the identity must write is handed to it: its data dir and named volumes are made its
  own (``chown``, without following links), its workdir and bind volumes get a POSIX ACL entry
  for it (and a default one, so files added later stay reachable), which leaves their owner
  and mode alone. A filesystem without ACLs is refused in one line naming the fix.
- When corral is not root it cannot switch users: a ``user:`` naming another user is refused,
  and a sandbox runs as corral's own user (bwrap's unprivileged user namespace), as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass

from corral.errors import DriverError

DYNAMIC = range(61184, 65520)  # systemd's DynamicUser range: transient, account-less uids
NOBODY_MAX = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to setresuid
SETPRIV_FIX = "apt-get install util-linux (setpriv switches an agent's user)"


class IdentityError(DriverError):
    """One line naming the agent's ``user:``, the problem and the fix."""


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    name: str  # for messages: "alice", or "uid 61234" with no account
    groups: tuple[int, ...] = ()  # a named user's supplementary groups (/etc/group)
    dynamic: bool = False  # the sandbox's own, not asked for


def resolve(user: str, where: str) -> Identity:
    """``user`` (a name or a uid) as it is on this host, or ``IdentityError``."""
    import pwd

    if user.isdigit():
        uid = int(user)
        if uid > NOBODY_MAX:
            raise IdentityError(f"{where}: uid {uid} is out of range", "use a uid below 2^32-1")
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # a bare uid, as systemd's User= takes it: its group is its number
            return Identity(uid, uid, f"uid {uid}")
    else:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise IdentityError(f"{where}: no user {user!r} on this host",
                                f"create it (useradd --system {user}) or give a uid") from None
    groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid)
    return Identity(entry.pw_uid, entry.pw_gid, entry.pw_name, groups)


def _taken(uid: int) -> bool:
    import grp
    import pwd

    with contextlib.suppress(KeyError):
        pwd.getpwuid(uid)
        return True
    with contextlib.suppress(KeyError):
        grp.getgrgid(uid)
        return True
    # systemd's own dynamic users hold a lock file per uid while their unit runs
    return any(os.path.lexists(f"/run/systemd/dynamic-uid/{name}")
               for name in (str(uid), f"direct:{uid}"))


def dynamic(key: str) -> Identity:
    """The stable account-less identity of ``key`` (a fleet and an agent)."""
    from corral.lean.sha import sha256

    start = int(sha256(key.encode()).hexdigest()[:8], 16) % len(DYNAMIC)
    for step in range(len(DYNAMIC)):
        uid = DYNAMIC[(start + step) % len(DYNAMIC)]
        if not _taken(uid):
            return Identity(uid, uid, f"uid {uid}", dynamic=True)
    raise IdentityError("no free uid in 61184-65519 for a sandbox's identity",
                        "free some, or give the agent a user:")


def of(agent: str, isolation: str, user: str | None, state_dir: str) -> Identity | None:
    """Whom the agent runs as; None: as corral itself (no switch)."""
    where = f"agents.{agent}.user"
    me = os.geteuid()
    if user is not None:
        ident = resolve(user, where)
        if ident.uid == me:
            return None
        if me != 0:
            raise IdentityError(f"{where}: corral runs as uid {me} and cannot switch to "
                                f"{ident.name}", "run corral as root, or remove user:")
        return ident
    if isolation == "sandbox" and me == 0:
        return dynamic(f"{state_dir}\0{agent}")
    return None


def switch(ident: Identity, *, sandboxed: bool) -> list[str]:
    """The argv prefix that becomes ``ident`` and execs the rest. In a sandbox also: no
    capability left anywhere and no new privileges (a setuid binary gives nothing back)."""
    import shutil

    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if setpriv is None:
        raise IdentityError("setpriv is not installed: an agent with another identity needs it",
                            SETPRIV_FIX)
    groups = (f"--groups={','.join(map(str, ident.groups))}" if ident.groups
              else "--clear-groups")
    args = [setpriv, f"--reuid={ident.uid}", f"--regid={ident.gid}", groups]
    if sandboxed:
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return [*args, "--"]


# --- handing over what it writes ----------------------------------------------------------

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


Visit = Callable[[int, os.stat_result], None]


def _walk(top_fd: int, visit: Visit, prune: Collection[tuple[int, int]] = ()) -> None:
    """``visit(fd, st)`` on the dir ``top_fd`` and every dir and regular file below it,
    opened relative to its parent without following a link (links themselves are left).
    Dirs whose (device, inode) is in ``prune`` are not entered (corral's state dir)."""
    visit(top_fd, os.fstat(top_fd))
    for _root, dirs, files, root_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        if prune:
            for name in list(dirs):
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                    if (st.st_dev, st.st_ino) in prune:
                        dirs.remove(name)
        for name in [*dirs, *files]:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                             | os.O_NOCTTY, dir_fd=root_fd)
            except OSError:
                continue  # a link, a socket, gone: nothing to hand over
            try:
                st = os.fstat(fd)
                if st.st_mode & 0o170000 in (0o040000, 0o100000):  # a dir or a regular file
                    visit(fd, st)
            finally:
                os.close(fd)


def own(path: str, ident: Identity) -> None:
    """Make ``path`` (a dir corral made for the agent) and all in it ``ident``'s."""
    fd = os.open(path, _NOFOLLOW_DIR)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) == (ident.uid, ident.gid):
            return  # made its own before: what it holds, it made itself
        def chown(f: int, s: os.stat_result) -> None:
            if (s.st_uid, s.st_gid) != (ident.uid, ident.gid):
                os.fchown(f, ident.uid, ident.gid)
        _walk(fd, chown)
    finally:
        os.close(fd)


# POSIX ACLs as the kernel stores them (xattr system.posix_acl_*): version 2, then entries of
# (tag, permissions, id), sorted by tag then id
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_ACCESS, _DEFAULT = "system.posix_acl_access", "system.posix_acl_default"


def _entries(fd: int, attr: str, mode: int | None) -> list[tuple[int, int, int]] | None:
    try:
        data = os.getxattr(fd, attr)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        if mode is None:
            return None
        return [(_USER_OBJ, (mode >> 6) & 7, _NO_ID), (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
                (_OTHER, mode & 7, _NO_ID)]
    count = (len(data) - 4) // 8
    return [struct.unpack_from("<HHI", data, 4 + 8 * i) for i in range(count)]


def _with_user(entries: list[tuple[int, int, int]], uid: int, perm: int
               ) -> list[tuple[int, int, int]]:
    kept = [e for e in entries if not (e[0] == _USER and e[2] == uid) and e[0] != _MASK]
    kept.append((_USER, perm, uid))
    group_class = 0
    for tag, p, _ in kept:
        if tag in (_USER, _GROUP_OBJ, _GROUP):
            group_class |= p
    kept.append((_MASK, group_class, _NO_ID))  # the mask lets the entries through
    return sorted(kept, key=lambda e: (e[0], e[2]))


def _pack(entries: list[tuple[int, int, int]]) -> bytes:
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _has(entries: list[tuple[int, int, int]] | None, uid: int, perm: int = 7) -> bool:
    return entries is not None and any(e[0] == _USER and e[2] == uid and e[1] == perm
                                       for e in entries)


def _allow(fd: int, st: os.stat_result, uid: int, perm: int, *, default: bool) -> None:
    """Add (or replace) the ACL entry ``uid:perm`` of ``fd``; ``default``: on its default
    ACL too (a dir's, inherited by what is made in it), with all permissions."""
    access = _entries(fd, _ACCESS, st.st_mode)
    assert access is not None
    os.setxattr(fd, _ACCESS, _pack(_with_user(access, uid, perm)))
    if default:
        inherited = _entries(fd, _DEFAULT, None) or access
        os.setxattr(fd, _DEFAULT, _pack(_with_user(inherited, uid, 7)))


def admit(state_dir: str, ident: Identity) -> None:
    """Let a process or venv agent with a ``user:`` pass corral's 0700 state dir on its way
    to its data dir (and its venv in the cache): an ACL entry ``--x`` on the state dir and on
    ``data``, no listing. What else the state dir holds is closed to it first (0700 dirs,
    0600 files: the store, the daemon's log and pid), so passing gives it nothing else."""
    where = f"{state_dir} (the state dir)"
    for name in os.listdir(state_dir):
        if name in ("data", "cache"):
            continue
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(os.path.join(state_dir, name))
            if st.st_mode & 0o077 and st.st_mode & 0o170000 in (0o040000, 0o100000):
                os.chmod(os.path.join(state_dir, name), st.st_mode & 0o7700)
    for path in (state_dir, os.path.join(state_dir, "data")):
        fd = os.open(path, _NOFOLLOW_DIR)
        try:
            # at every start: a chmod of the dir (the daemon's 0700) empties the ACL's mask
            _allow(fd, os.fstat(fd), ident.uid, 1, default=False)
        except OSError as exc:
            raise IdentityError(f"cannot let {ident.name} pass {where}: {exc.strerror}",
                                "put the state dir on a filesystem with POSIX ACLs") from None
        finally:
            os.close(fd)


def _open_dir(path: str, where: str) -> int:
    """The dir itself, never what a link there points to."""
    try:
        return os.open(path, _NOFOLLOW_DIR)
    except OSError as exc:
        raise IdentityError(f"{where}: cannot open {path}: {exc.strerror}",
                            "make it a directory (not a link)") from None


def grant(path: str, ident: Identity, where: str, *, skip: Collection[str] = ()) -> None:
    """Let ``ident`` read and write ``path`` (a dir the user owns: a workdir, a bind volume)
    and everything in it, through an ACL entry; dirs also get a default entry, so what others
    add later is the identity's to write too. Once the top dir has it, nothing is walked.
    Dirs in ``skip`` (corral's state dir inside a workdir) are left alone. The agent gets no
    more than it had as root in a writable workdir; the host's other users, nothing."""
    fd = _open_dir(path, where)
    try:
        st = os.fstat(fd)
        if st.st_uid == ident.uid or (_has(_entries(fd, _ACCESS, None), ident.uid)
                                      and _has(_entries(fd, _DEFAULT, None), ident.uid)):
            return

        def add(f: int, s: os.stat_result) -> None:
            if s.st_uid == ident.uid:
                return
            directory = s.st_mode & 0o170000 == 0o040000
            _allow(f, s, ident.uid, 7 if directory else 6 | ((s.st_mode >> 6) & 1),
                   default=directory)  # x for what was executable

        prune = set()
        for other in skip:
            with contextlib.suppress(OSError):
                sst = os.stat(other)
                prune.add((sst.st_dev, sst.st_ino))
        try:
            _walk(fd, add, prune)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
                raise IdentityError(
                    f"{where}: {path} is on a filesystem without POSIX ACLs, so the agent's "
                    f"identity ({ident.name}) cannot be let in",
                    f"chown {ident.uid} {path}, or give the agent a user: that owns it"
                ) from None
            raise IdentityError(f"{where}: cannot let {ident.name} write {path}: "
                                f"{exc.strerror}", "check the dir's permissions") from None
    finally:
        os.close(fd)


def let_in(path: str, ident: Identity, where: str) -> None:
    """Let ``ident`` enter and list ``path`` itself (an ACL entry ``r-x`` on that one dir,
    nothing walked): the project root shown read-only as a sandbox's default workdir. What is
    in it the agent reads as any other user would (a file 0644 yes, a 0600 one no); the
    manifest's secret sources and env files are covered in its view anyway."""
    fd = _open_dir(path, where)
    try:
        st = os.fstat(fd)
        if st.st_uid == ident.uid or _has(_entries(fd, _ACCESS, None), ident.uid, 5):
            return
        _allow(fd, st, ident.uid, 5, default=False)
    except OSError as exc:
        raise IdentityError(f"{where}: cannot let {ident.name} read {path}: {exc.strerror}",
                            f"chmod o+rx {path}, or give the agent a workdir of its own"
                            ) from None
    finally:
        os.close(fd)


def reachable(path: str, ident: Identity) -> str | None:
    """The first dir on the way to ``path`` that ``ident`` may not enter (by mode bits:
    owner, group, other), or None. For a clear line before the agent fails on EACCES."""
    parts = os.path.abspath(path).split("/")
    for i in range(2, len(parts)):
        parent = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(parent)
        except OSError:
            return None  # it does not exist: the caller's own check says so
        if st.st_uid == ident.uid:
            bit = 0o100
        elif st.st_gid == ident.gid or st.st_gid in ident.groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return parent
    return None

"""The bubblewrap command line of a sandboxed agent: what it may see, write and reach.

The view, in the order bwrap applies it (a later mount covers an earlier one):

1. the whole system read-only, a fresh ``/dev``, ``/proc`` of its own PID namespace and a
   private ``/tmp``;
2. hidden behind empty tmpfs: the users' homes, corral's state dir, the project dir (so other
   agents' directories and files are not there), and any other path asked for;
3. shown again read-only: what the agent needs from hidden places to run at all (its
   interpreter's prefix under a home, its venv in the state dir's cache);
4. writable: its workdir, its own data dir and its declared volumes;
5. its secrets, read-only at ``/run/secrets``, and its ``/etc/hosts`` when the other agents'
   names resolve there (``hosts_file``: the host's entries and theirs);
6. masked (``/dev/null`` over them): the manifest's secret sources and env files, wherever
   an earlier step showed them.

A source the driver opened (``View.opened``, ``Source`` as an fd) is bound by descriptor
(``--bind-fd``): the inode ``drivers.beneath`` checked, never the path looked up again.

It gets its own PID, IPC and UTS namespaces, and its own network namespace (only a loopback
that nothing else shares) unless ``network: host``, or the one it was started in (``joined``:
a loopback shared with chosen agents, see ``host.loopback``). With ``identity`` (a
sandbox run by root, ``ownership.identity``) bwrap still mounts as root, then the agent's first
process drops to that uid through ``setpriv``: the scratch tmpfs are 1777 and the dirs bwrap
makes for mount points inside a tmpfs 0755, so the unprivileged agent can pass them. No
``--die-with-parent``:
agents must outlive a daemon that is killed, to be re-adopted by the next one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# joined: the caller has put bwrap in a namespace already (a shared loopback's)
NETWORKS = ("none", "host", "joined")
# a bind's source: a host path, or an fd opened on it (bwrap >= 0.8: --bind-fd)
Source = str | int


@dataclass(frozen=True, slots=True)
class View:
    """Absolute host paths; ``volumes`` map a host path to where the agent sees it."""

    workdir: str
    hidden: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    volumes: tuple[tuple[Source, str, bool], ...] = ()  # (host, target, read_only)
    secrets_dir: Source | None = None
    hosts: Source | None = None  # the /etc/hosts it sees (``hosts_file``); None: the host's
    network: str = "none"
    extra_env: dict[str, str] = field(default_factory=dict)
    # host path -> an O_PATH fd opened on it (drivers.beneath): bound instead of the path,
    # so what was checked is what gets mounted; bwrap closes each after binding it
    opened: Mapping[str, int] = field(default_factory=dict)
    # files covered by /dev/null (unreadable: binds are nodev) wherever they are: secret
    # sources, env files, the manifest; after every bind, so none shows them again
    masked: tuple[str, ...] = ()
    workdir_read_only: bool = False  # the project root as default workdir: seen, not written
    # the argv prefix (``corral.ownership.identity.switch``) that drops root for the agent's own
    # identity inside, once bwrap (as root) has made the mounts; empty: it runs as bwrap does
    identity: tuple[str, ...] = ()


def default_hidden(environ: dict[str, str]) -> list[str]:
    """The users' homes: credentials, SSH keys, cloud profiles and browser data live there."""
    homes = ["/root", "/home"]
    home = environ.get("HOME")
    if home and home not in ("/", ""):
        homes.append(home)
    return homes


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _mountable(path: str) -> bool:
    return os.path.lexists(path)


# private in every sandbox: whatever the host keeps under them is not there
MASKED = ("/tmp", "/var/tmp", "/dev/shm", "/run")


def prefix_of(executable: str, *, resolve: bool = True) -> str:
    """The installation an executable belongs to: ``/opt/py/bin/python3`` → ``/opt/py``
    (its ``lib`` comes along); a file outside a ``bin`` dir is shown alone. ``resolve``:
    of the file the path finally points to (else of the path itself, a venv's link)."""
    real = os.path.realpath(executable) if resolve else os.path.abspath(executable)
    parent = os.path.dirname(real)
    if os.path.basename(parent) in ("bin", "sbin"):
        return os.path.dirname(parent)
    return real


def venv_base(venv_dir: str) -> str | None:
    """The prefix of the interpreter a venv was made from (``home =`` in pyvenv.cfg)."""
    try:
        with open(os.path.join(venv_dir, "pyvenv.cfg"), encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "home":
                    return os.path.dirname(value.strip().rstrip("/"))
    except OSError:
        return None
    return None


def sandbox_path(path_var: str, hidden: Sequence[str], first: Sequence[str] = ()) -> str:
    """PATH inside: entries under hidden dirs would not resolve there (pyenv shims in a
    home, say), so they are dropped and the shown bin dirs go first."""
    kept = [p for p in path_var.split(os.pathsep) if p and not _under(p, hidden)]
    return os.pathsep.join(dict.fromkeys([*first, *kept]))


_HIDE, _RO, _RW = 0, 1, 2


def bind(source: Source, target: str, *, read_only: bool) -> list[str]:
    """One bind: an fd source is bound as the inode it is open on, never looked up again."""
    if isinstance(source, int):
        return ["--ro-bind-fd" if read_only else "--bind-fd", str(source), target]
    return ["--ro-bind" if read_only else "--bind", source, target]


def _mount(path: str, how: int, opened: Mapping[str, int]) -> list[str]:
    if how == _HIDE:
        if os.path.isdir(path):
            return ["--tmpfs", path]
        return ["--ro-bind", "/dev/null", path]  # a hidden file reads empty
    return bind(opened.get(path, path), path, read_only=how == _RO)


def argv(view: View, command: Sequence[str], *, bwrap: str = "bwrap") -> list[str]:
    """The bwrap argv. The most specific rule wins: mounts go shallowest first, so a
    writable workdir inside a hidden home is shown, and a state dir inside that workdir is
    hidden again, and the agent's own data dir inside the state dir shown again."""
    if view.network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
    # a tmpfs is 0755 root's: the scratch dirs are 1777, as on the host, for an agent that
    # is not root inside
    scratch = ["--perms", "1777"] if view.identity else []
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            *scratch, "--tmpfs", "/tmp", *scratch, "--tmpfs", "/var/tmp",
            *scratch, "--tmpfs", "/dev/shm",
            # host sockets (container engines, D-Bus) live in /run: none of the agent's business
            "--tmpfs", "/run",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            *_capabilities(view)]
    if view.network == "none":
        args.append("--unshare-net")
    rules: dict[str, int] = {}
    workdir = () if view.workdir_read_only else (view.workdir,)
    shown = (view.workdir,) if view.workdir_read_only else ()
    for paths, how in ((view.hidden, _HIDE), ((*view.read_only, *shown), _RO),
                       ((*workdir, *view.writable), _RW)):
        for path in paths:
            path = os.path.normpath(path)
            if path in view.opened or _mountable(path):
                rules[path] = max(how, rules.get(path, _HIDE))
    if view.network == "host" and os.path.isdir("/run/systemd/resolve"):
        rules.setdefault("/run/systemd/resolve", _RO)  # resolv.conf may point there
    ordered = sorted(rules, key=lambda p: (p.count("/"), p))
    made: set[str] = set()
    for path in ordered:
        args += _parents(view, path, rules, made)
        args += _mount(path, rules[path], view.opened)
    # hidden dirs are empty tmpfs, read-only once every deeper mount point exists in them
    for path in ordered:
        if rules[path] == _HIDE and os.path.isdir(path):
            args += ["--remount-ro", path]
    for host, target, read_only in view.volumes:
        args += _parents(view, os.path.normpath(target), rules, made)
        args += bind(host, target, read_only=read_only)
    if view.secrets_dir is not None:
        args += bind(view.secrets_dir, "/run/secrets", read_only=True)
    if view.hosts is not None:
        args += bind(view.hosts, "/etc/hosts", read_only=True)
    for path in view.masked:
        args += ["--ro-bind", "/dev/null", path]
    for key, value in view.extra_env.items():
        args += ["--setenv", key, value]
    args += ["--chdir", view.workdir, "--", *view.identity, *command]
    return args


def hosts_file(path: str, entries: Sequence[tuple[str, str]], *,
               system: str = "/etc/hosts") -> str:
    """Write ``path``: the host's hosts file, then one line per ``(name, address)`` (the
    fleet's agents, ``manifest.peers.hosts``); readable by any uid (the agent's own)."""
    try:
        with open(system, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # no hosts file on the host: localhost is still resolvable inside
        text = "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
    lines = "".join(f"{address}\t{name}\n" for name, address in entries)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{text.rstrip()}\n# corral: the fleet's agents\n{lines}")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def _parents(view: View, path: str, rules: dict[str, int], made: set[str]) -> list[str]:
    """The dirs between the tmpfs ``path`` is mounted in and ``path``, made 0755 first: bwrap
    run by root makes a mount point's missing parents 0700, which an agent with an identity of
    its own could not pass (a data dir under the hidden state dir). Only inside a tmpfs of
    the sandbox's: nothing is ever made in a host dir."""
    if not view.identity:
        return []
    tmpfs = [*MASKED, *(p for p, how in rules.items() if how == _HIDE and os.path.isdir(p))]
    mounts = [*tmpfs, *(p for p, how in rules.items() if how != _HIDE)]
    holders = [m for m in mounts if m != path and _under(path, [m])]
    if not holders:
        return []
    holder = max(holders, key=len)
    if holder not in tmpfs:
        return []
    out: list[str] = []
    current = holder
    for part in os.path.relpath(path, holder).split("/")[:-1]:
        current = os.path.join(current, part)
        if current not in made:
            made.add(current)
            out += ["--perms", "0755", "--dir", current]
    return out


def _capabilities(view: View) -> list[str]:
    """Root inside keeps uid 0 but no capability: it cannot unmount what hides the homes, nor
    remount the system writable. With an identity to become, the first process keeps only
    what ``setpriv`` needs to change its uid, gids and bounding set; the uid change itself
    clears them before the agent's code runs."""
    if not view.identity:
        return ["--cap-drop", "ALL"]
    return ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SETPCAP"]


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def sandbox_init(bwrap_pid: int) -> int | None:
    """PID 1 of a running sandbox, as the host numbers it: the child bwrap made in the new
    namespaces (bwrap itself stays outside, waiting). None: no such sandbox (yet)."""
    try:
        with open(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children", encoding="ascii") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def enter(init_pid: int, become: Sequence[str] | None = None) -> list[str]:
    """The argv prefix that runs a command inside a running sandbox, as its agent runs: its
    mount, PID, IPC, UTS, network and cgroup namespaces, its root and workdir (taken from the
    sandbox's own PID 1, never resolved on the host, so nothing hidden comes back through a
    directory handle), no capabilities and no new privileges. ``become``: a ``setpriv``
    prefix that also takes the agent's identity, used instead of the plain one (a second
    setpriv would start with no capability left to change the uid)."""
    nsenter, setpriv = shutil.which("nsenter"), shutil.which("setpriv")
    if nsenter is None or setpriv is None:
        raise FileNotFoundError("nsenter and setpriv (util-linux) are needed to enter a sandbox")
    args = [nsenter, f"--target={init_pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
            "--cgroup", "--root", "--wd"]
    if os.geteuid() != 0:  # a rootless sandbox's namespaces belong to its user namespace
        args += ["--user", "--preserve-credentials"]
    if become:
        return [*args, "--", *become]
    return [*args, "--", setpriv, "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all",
            "--"]

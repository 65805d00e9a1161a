"""The environment an agent starts with: one builder for the daemon, ``corral run`` and
``corral exec``, and the daemon's own environment.

An allow-list, the way systemd gives a service a clean environment instead of its caller's:

- ``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``: who the process runs as and where its
  programs are (systemd sets these from the user's passwd entry; corral takes them from its
  environment and fills a missing one from passwd);
- ``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``: the locale and time zone (systemd's locale.conf and
  ``TZ``), so text and timestamps read as they do in the user's shell;
- ``XDG_*``: the base directories and the runtime dir (a systemd user manager exports these);
- ``TMPDIR``: where temporary files go, when the user moved them (a small /tmp);
- ``TERM``, ``COLORTERM``: only for ``corral run``/``exec``, which are attached to the user's
  terminal (systemd sets ``TERM`` only for units with a tty).

Everything else stays out unless the manifest names it: ``env``, ``env_file``, ``secrets``,
and ``inherit_env: [NAME or glob]`` (values from the environment of the ``corral`` command,
sent to the daemon with ``corral up``). That includes proxies (``HTTP_PROXY``...), Python's
``PYTHONPATH``/``VIRTUAL_ENV``, ``LD_*``, the SSH agent, the desktop session (``DISPLAY``,
``DBUS_SESSION_BUS_ADDRESS``) and every credential. A glob never matches a name that looks
like a credential nor a variable a secret is read from; an exact name does (it is explicit).

The daemon itself runs with the same base plus what corral reads for itself (container
engine endpoints and corral's settings), what lets it import corral (``PYTHONPATH``), and
what the builds it runs need: uv's, pip's and npm's settings, proxies and CA bundles (a venv
or node_modules is built by the daemon and must reach the index as the user's shell does).
Those reach no agent, since every agent's environment starts again from the allow-list.

Pure functions (inputs -> dict), kept free of the daemon's state so a fuller task builder
can absorb them.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence

from corral.paths import StateLayout
from corral.secrets import looks_like_credential

BASE = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ",
                  "TMPDIR"})
BASE_PREFIXES = ("LC_", "XDG_")
TERMINAL = frozenset({"TERM", "COLORTERM"})
# read by corral itself (containers/service.py, engine.py, ops.py, image.py, credentials.py:
# the engines' registry logins), or needed for the daemon's interpreter to find corral at all
DAEMON_ONLY = frozenset({
    "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
    "CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE", "CORRAL_CACHE", "CORRAL_CONTAINER_ENGINE",
    "CORRAL_CONTAINER_API", "PYTHONPATH", "PYTHONHOME",
    # the daemon's own bounds (api/listener.py, api/http.py: the README's knobs)
    "CORRAL_API_MAX_CONNECTIONS", "CORRAL_METRICS_MAX_CONNECTIONS", "CORRAL_HTTP_HEADER_TIMEOUT",
    "CORRAL_HTTP_IDLE_TIMEOUT", "CORRAL_HTTP_BODY_TIMEOUT", "CORRAL_HTTP_SEND_TIMEOUT",
    # the builds' (uv, npm, podman build): how to reach an index through this network
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "DOCKER_BUILDKIT",
})
DAEMON_PREFIXES = ("UV_", "PIP_", "NPM_CONFIG_", "npm_config_")
# corral's own AWS identity (cloud.aws, corral.cloud.aws): where the SDK finds it; the agents
# get none of these (an agent with aws: gets a config of its own, every other agent NO_CLOUD)
DAEMON_AWS = frozenset({"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
                        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_CA_BUNDLE"})
# An agent without aws: finds no AWS credentials: not the files of corral's user (its HOME
# is theirs), nor the instance metadata service; what it sets itself in env it keeps.
NO_CLOUD = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}
CLOUD_PREFIX = "AWS_"  # a glob of inherit_env never matches these: name them one by one
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd's
# Settings of the host that mean nothing inside a container or guest (the image and the guest
# have their own users, paths and runtime dirs); kept when the manifest names them itself.
HOST_ONLY = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL",
                       "TMPDIR", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "LD_LIBRARY_PATH",
                       "LD_PRELOAD", "PYENV_ROOT", "PYENV_VERSION"})


def allowed(name: str, *, terminal: bool = False) -> bool:
    return name in BASE or name.startswith(BASE_PREFIXES) or (terminal and name in TERMINAL)


def clean_base(environ: Mapping[str, str], *, terminal: bool = False) -> dict[str, str]:
    """The allow-listed part of ``environ``; a missing PATH, HOME, USER, LOGNAME or SHELL is
    filled in (systemd's default PATH, the passwd entry of this user)."""
    env = {k: v for k, v in environ.items() if allowed(k, terminal=terminal)}
    env.setdefault("PATH", DEFAULT_PATH)
    if not all(k in env for k in ("HOME", "USER", "LOGNAME", "SHELL")):
        import pwd

        try:
            entry = pwd.getpwuid(os.getuid())
        except KeyError:  # a uid without a passwd entry (some containers): nothing to add
            return env
        env.setdefault("HOME", entry.pw_dir)
        env.setdefault("USER", entry.pw_name)
        env.setdefault("LOGNAME", entry.pw_name)
        env.setdefault("SHELL", entry.pw_shell or "/bin/sh")
    return env


def daemon_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the daemon is started with: the clean base and corral's own settings."""
    return {**clean_base(environ), **{k: v for k, v in environ.items()
                                      if k in DAEMON_ONLY or k in DAEMON_AWS
                                      or k.startswith(DAEMON_PREFIXES)}}


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def inherited(patterns: Sequence[str], environ: Mapping[str, str],
              withheld: Iterable[str] = ()) -> dict[str, str]:
    """The variables of ``environ`` that ``inherit_env`` names: an exact name always, a glob
    never a credential-looking name nor one of ``withheld`` (the secrets' sources)."""
    if not patterns:
        return {}
    exact = [p for p in patterns if not is_glob(p)]
    out = {k: environ[k] for k in exact if k in environ}
    globs = [p for p in patterns if is_glob(p)]
    if globs:
        skip = set(withheld)
        for name, value in environ.items():
            if name not in out and name not in skip and not looks_like_credential(name) \
                    and not name.startswith(CLOUD_PREFIX) \
                    and any(fnmatch.fnmatchcase(name, g) for g in globs):
                out[name] = value
    return out


def patterns(manifest: object, agent: object) -> list[str]:
    """The agent's ``inherit_env``: the fleet's (top level) and its own. The models fold the
    fleet's into each agent already; a manifest sent to the API by a script may not."""
    both = [*getattr(manifest, "inherit_env", ()), *getattr(agent, "inherit_env", ())]
    return list(dict.fromkeys(both))


def sources(manifest: object) -> list[str]:
    """The variables the manifest's ``environment:`` secrets are read from."""
    found = (getattr(s, "environment", None) for s in getattr(manifest, "secrets", {}).values())
    return [name for name in found if name]


def sent_by_cli(manifest: object, environ: Mapping[str, str]) -> dict[str, str]:
    """What ``corral up`` sends the daemon from its environment: the values of the secrets'
    ``environment:`` sources and of every variable an agent's ``inherit_env`` names."""
    withheld = sources(manifest)
    out = {name: environ[name] for name in withheld if name in environ}
    for agent in getattr(manifest, "agents", {}).values():
        out.update(inherited(patterns(manifest, agent), environ, withheld))
    return out


def agent_environment(agent: object, *, project: str, name: str, state_dir: str,
                      base: Mapping[str, str], given: Mapping[str, str],
                      inherit: Sequence[str] = (), withheld: Iterable[str] = (),
                      terminal: bool = False, peers: Mapping[str, str] | None = None
                      ) -> dict[str, str]:
    """Every replica's environment before its secrets: the clean base of ``base``, what
    ``inherit`` (see ``patterns``) names in ``given`` (the CLI's environment), where the other
    agents are (``peers``: ``manifest.peers.environment``, ``CORRAL_ADDR_*``), the agent's
    ``env`` (which holds its ``env_file`` values, and may say another address), and corral's
    own variables. ``agent`` is a manifest agent (the daemon's spec or the CLI's model: the
    fields have the same names)."""
    replicas = getattr(agent, "replicas", 1)
    return {
        **NO_CLOUD,  # an agent with aws: gets its own config at start (runtime.identities)
        **clean_base(base, terminal=terminal),
        **inherited(inherit, given, withheld),
        **(peers or {}),
        **getattr(agent, "env", {}),
        "CORRAL_PROJECT": project, "CORRAL_AGENT": name, "CORRAL_REPLICAS": str(replicas),
        "CORRAL_STATE_DIR": StateLayout(state_dir).data(name),
    }


def for_guest(env: Mapping[str, str], agent: object) -> dict[str, str]:
    """``env`` as it goes into a container or a VM guest: the host-only settings left out
    unless the agent sets them or names them in ``inherit_env`` itself."""
    own = set(getattr(agent, "env", {}))
    own |= {p for p in getattr(agent, "inherit_env", ()) if not is_glob(p)}
    return {k: v for k, v in env.items()
            if k in own or not (k in HOST_ONLY or k.startswith("XDG_"))}

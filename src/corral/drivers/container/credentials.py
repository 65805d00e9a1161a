"""The engine's own registry credentials, for a pull through its API.

Docker's daemon never reads the user's ``~/.docker/config.json``: its client sends what that
file holds in the ``X-Registry-Auth`` header, and so does corral. Podman's service would read
its auth file itself, but only the one of its own environment: the header makes a shared
service (systemd's ``podman.socket``) use the caller's too. The files are the engines':

- podman: ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json``, else
  ``~/.config/containers/auth.json``, else Docker's file (Podman's own order);
- docker: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

An entry kept by a credential helper (``credsStore``, ``credHelpers``) is not read here: the
pull then goes through the engine's CLI, which runs the helper.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str
    registry: str

    def header(self) -> str:
        """The ``X-Registry-Auth`` value: base64url JSON, as Docker's client sends it."""
        doc = {"username": self.username, "password": self.password,
               "serveraddress": self.registry}
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


class NeedsHelper(Exception):
    """The credentials are kept by a credential helper: only the engine's CLI runs it."""


def registry_of(ref: str) -> str:
    """The registry part of an image reference (Docker's rule: a first component with a dot
    or a colon, or ``localhost``), else Docker Hub."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def auth_files(engine: str) -> list[str]:
    home = os.path.expanduser("~")
    docker = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker"),
                          "config.json")
    if engine == "docker":
        return [docker]
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return [explicit]
    files = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(os.path.join(runtime, "containers", "auth.json"))
    files += [os.path.join(home, ".config", "containers", "auth.json"), docker]
    return files


def _key(entry: str) -> str:
    """An ``auths`` key as a registry (or registry/namespace): no scheme, no ``/v1/``."""
    key = entry.partition("://")[2] or entry
    key = key.rstrip("/")
    if key.endswith("/v1") or key.endswith("/v2"):
        key = key[:-3]
    first, sep, rest = key.partition("/")
    return (DOCKER_HUB if first in _HUB_ALIASES else first) + sep + rest


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = doc.get(name)
    return found if isinstance(found, dict) else {}


def login_for(engine: str, ref: str) -> Login | None:
    """The stored login for ``ref``'s registry (the longest matching namespace first, as
    Podman matches), or None: pull anonymously. Raises ``NeedsHelper``."""
    registry = registry_of(ref)
    repo = ref if registry != DOCKER_HUB or ref.startswith(DOCKER_HUB + "/") else \
        f"{DOCKER_HUB}/{ref}"
    for path in auth_files(engine):
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        auths = _table(doc, "auths")
        matches = sorted(((k, v) for k, v in auths.items()
                          if (key := _key(k)) == registry or repo.startswith(key + "/")),
                         key=lambda kv: -len(_key(kv[0])))
        for _, entry in matches:
            if isinstance(entry, dict) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return Login(user, password, registry)
        helpers = _table(doc, "credHelpers")
        if any(_key(k) == registry for k in helpers) or doc.get("credsStore"):
            raise NeedsHelper(registry)
        if matches:
            return None
    return None

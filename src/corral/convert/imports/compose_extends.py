"""Compose's ``extends``: a service built on another one, of the same file or of another
(``{file, service}``), merged as the Compose Specification's merge rules say before the
mapping to corral sees it. Mappings merge key by key (the extending service wins);
``command``, ``entrypoint`` and ``healthcheck.test`` are replaced whole; ``ports``,
``expose``, ``env_file``, ``dns`` and the like are appended; ``volumes`` and ``secrets``
merge by where they land. Relative paths of a service read from another file (its build
context, env files, bind mounts) are made relative to the importing file, as compose does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from corral.errors import CorralError

Reader = Callable[[str], dict[str, Any]]

_REPLACED = {"command", "entrypoint"}
_APPENDED = {"ports", "expose", "env_file", "dns", "dns_search", "dns_opt", "cap_add",
             "cap_drop", "devices", "external_links", "links", "tmpfs", "security_opt",
             "group_add", "profiles"}
_AS_MAPPINGS = {"environment", "labels", "extra_hosts", "sysctls", "annotations"}
_BY_TARGET = {"volumes", "secrets", "configs"}
_DEPTH = 32  # compose files extending in a longer chain are a loop in disguise


def resolve(services: dict[str, Any], source: str, read: Reader) -> dict[str, Any]:
    """The services of ``source`` with every ``extends`` merged in (``read``: a compose file's
    checked YAML, by path; called once per other file)."""
    files: dict[str, dict[str, Any]] = {source: {"services": services}}

    def load(path: str) -> dict[str, Any]:
        if path not in files:
            files[path] = read(path)
        return files[path]

    return {name: _resolved(name, svc or {}, source, load, ())
            for name, svc in services.items()}


def _resolved(name: str, svc: dict[str, Any], source: str,
              load: Callable[[str], dict[str, Any]], chain: tuple[str, ...]) -> dict[str, Any]:
    ext = svc.get("extends")
    if ext is None:
        return svc
    base_name, file = (ext, None) if isinstance(ext, str) else (ext.get("service"),
                                                                ext.get("file"))
    path = os.path.normpath(os.path.join(os.path.dirname(source), file)) if file else source
    here = f"{os.path.basename(path)}#{base_name}"
    if here in chain or len(chain) > _DEPTH:
        raise CorralError(f"{os.path.basename(source)}: services.{name}.extends: {here} "
                          f"extends itself ({' -> '.join((*chain, here))})",
                          "break the loop of extends")
    if not os.path.isfile(path):
        raise CorralError(f"{os.path.basename(source)}: services.{name}.extends: no file "
                          f"{file}", "give the file the service extends, beside the compose "
                          "file")
    others = load(path).get("services") or {}
    if base_name not in others:
        raise CorralError(f"{os.path.basename(source)}: services.{name}.extends: "
                          f"{os.path.basename(path)} has no service {base_name!r}",
                          "name a service that file defines")
    base = _resolved(str(base_name), others[base_name] or {}, path, load, (*chain, here))
    if path != source:
        base = _rebased(base, os.path.dirname(path), os.path.dirname(source))
    own = {k: v for k, v in svc.items() if k != "extends"}
    return merge(base, own)


def merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``, by the Compose Specification's merge rules."""
    out = dict(base)
    for key, value in own.items():
        if key not in out or key in _REPLACED or value is None:
            out[key] = value
        elif key in _AS_MAPPINGS:
            out[key] = {**_mapping(out[key]), **_mapping(value)}
        elif key in _APPENDED:
            out[key] = [*_listed(out[key]), *_listed(value)]
        elif key in _BY_TARGET:
            out[key] = _by_target(_listed(out[key]), _listed(value))
        elif key == "depends_on":
            out[key] = {**_dependencies(out[key]), **_dependencies(value)}
        elif key == "healthcheck" and isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = {**out[key], **value}  # ``test`` replaced whole with the rest
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value or []:
        key, eq, val = str(item).partition("=")
        if not eq:
            key, _, val = str(item).partition(":")  # extra_hosts' "host:ip"
        out[key] = val if (eq or val) else None
    return out


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, dict)) else list(value or [])


def _dependencies(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {str(d): {} for d in value or []}


def _target(item: Any) -> str:
    """Where a volume, secret or config lands: its key for merging."""
    if isinstance(item, dict):
        return str(item.get("target") or item.get("source"))
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _by_target(base: list[Any], own: list[Any]) -> list[Any]:
    mine = {_target(i) for i in own}
    return [i for i in base if _target(i) not in mine] + own


def _rebased(svc: dict[str, Any], there: str, here: str) -> dict[str, Any]:
    """The paths of a service read from a file in ``there``, relative to ``here``."""
    def path(p: Any) -> Any:
        if not isinstance(p, str) or not p.startswith(".") or "$" in p:
            return p  # absolute, a name, a URL or a variable: as written
        rel = os.path.relpath(os.path.normpath(os.path.join(there, p)), here)
        return rel if rel.startswith("..") else f"./{rel}"

    out = dict(svc)
    build = out.get("build")
    if isinstance(build, str):
        out["build"] = path(build)
    elif isinstance(build, dict) and "context" in build:
        out["build"] = {**build, "context": path(build["context"])}
    files = out.get("env_file")
    if files is not None:
        out["env_file"] = [{**f, "path": path(f.get("path"))} if isinstance(f, dict) else path(f)
                           for f in _listed(files)]
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [_volume(v, path) for v in out["volumes"]]
    return out


def _volume(item: Any, path: Callable[[Any], Any]) -> Any:
    if isinstance(item, dict):
        return {**item, "source": path(item["source"])} if item.get("type") == "bind" \
            and "source" in item else item
    source, colon, rest = str(item).partition(":")
    return f"{path(source)}{colon}{rest}"

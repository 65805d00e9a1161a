"""An agent's environment and secrets in the cluster. The environment (its ``env``, which
holds its env files' values, and corral's own variables, from the one task builder) goes into a
ConfigMap its pods read whole (``envFrom``); the pod template carries the ConfigMap's hash so
a changed value rolls the pods. Secret values are never written unless asked: pods refer to
Secrets (one per manifest secret, its value under the key ``value``) that the user creates
with the ``kubectl create secret`` lines of the bundle's README, or, with
``--include-secrets``, Secret objects holding the values read from their sources now."""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

from corral.convert import fleet
from corral.convert.export.kubernetes import network
from corral.convert.export.kubernetes.names import dns_label, meta
from corral.convert.export.kubernetes.plan import Obj, Plan
from corral.environ import for_guest
from corral.errors import CorralError
from corral.lean.sha import sha256

SECRETS_DIR = "/run/secrets"  # as the container level mounts them
DATA_DIR = "/var/lib/corral/data"  # the agent's CORRAL_STATE_DIR, as the container level's
SECRET_KEY = "value"
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def environment(plan: Plan, name: str) -> dict[str, str]:
    """What ``corral up`` gives the agent, with its peers at their Services."""
    agent = plan.agent(name)
    # as a container gets it: the host's PATH, HOME... left to the image (``for_guest``);
    # the agent's own env may name another address than its peers' Services
    env = for_guest(fleet.environment(plan.manifest, name, network.addresses(plan, name)),
                    agent)
    env.setdefault("CORRAL_STATE_DIR", DATA_DIR)
    if any(use.env is None for use in agent.secrets):
        env.setdefault("CORRAL_SECRETS_DIR", SECRETS_DIR)
    if agent.replicas == 1:
        env.setdefault("CORRAL_INSTANCE", f"{name}.1")
        env.setdefault("CORRAL_INSTANCE_INDEX", "1")
    else:
        plan.report.changed(name, "replicas", "CORRAL_INSTANCE is the pod's name and "
                            "CORRAL_INSTANCE_INDEX is not set (Kubernetes' replicas are not "
                            "numbered)")
    if agent.env_file:
        plan.report.changed(name, "env_file", "its values, read now, are in the ConfigMap "
                            f"{config_map_name(plan, name)} (export again after a change)")
    if agent.inherit_env:
        plan.report.dropped(name, "inherit_env", "the cluster has no `corral up` shell to "
                            f"inherit {', '.join(agent.inherit_env)} from: set them in env")
    # corral's own names are valid keys: only the others are checked (n of them per agent)
    for key in [k for k in env if not k.startswith("CORRAL_") and not _KEY.match(k)]:
        del env[key]
        plan.report.dropped(name, f"env.{key}", "not a valid ConfigMap key or variable name")
    return env


def config_map_name(plan: Plan, name: str) -> str:
    return f"{plan.names.of_agent(name)}-env"


def config_map(plan: Plan, name: str, env: dict[str, str]) -> tuple[Obj, str]:
    """The agent's ConfigMap and its hash (for the pod template's annotation)."""
    digest = sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": meta(config_map_name(plan, name), plan.names.agent_labels(name),
                            plan.namespace),
           "data": dict(sorted(env.items()))}
    return obj, digest


def secret_names(plan: Plan) -> dict[str, str]:
    """Each manifest secret's Secret name (DNS-1123; two that differ only in case apart)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for secret in plan.manifest.secrets:
        name = dns_label(f"{plan.manifest.name}-{secret}")
        if name in taken:
            name = dns_label(f"{name}-{sha256(secret.encode()).hexdigest()[:6]}")
        taken.add(name)
        out[secret] = name
    return out


def used(plan: Plan) -> list[str]:
    found = {use.source for agent in plan.manifest.agents.values() for use in agent.secrets}
    unused = [s for s in plan.manifest.secrets if s not in found]
    for secret in unused:
        plan.report.dropped(None, f"secrets.{secret}", "no agent uses it: no Secret is made")
    return [s for s in plan.manifest.secrets if s in found]


def secret_refs(plan: Plan, name: str, names: dict[str, str]
                ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The agent's secret variables (``secretKeyRef``), and the projected volume that holds
    its secret files at /run/secrets/TARGET (mode 0400), None without any."""
    env: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for use in plan.agent(name).secrets:
        ref = names[use.source]
        if use.env is not None:
            env.append({"name": use.env, "valueFrom": {"secretKeyRef": {
                "name": ref, "key": SECRET_KEY}}})
        else:
            items.append({"secret": {"name": ref, "items": [
                {"key": SECRET_KEY, "path": use.target or use.source}]}})
    volume = {"name": "secrets", "projected": {"defaultMode": 0o400, "sources": items}} \
        if items else None
    return env, volume


def secrets(plan: Plan, names: dict[str, str], wanted: list[str]) -> list[Obj]:
    """With ``include_secrets``: the Secret objects, their values read now."""
    if not plan.options.include_secrets:
        return []
    from corral.secrets import SecretError, Source, resolve

    out: list[Obj] = []
    for secret in wanted:
        spec = plan.manifest.secrets[secret]
        source = Source(name=secret, environment=spec.environment, file=spec.file,
                        env_file=spec.env_file, key=spec.key,
                        command=tuple(spec.command) if spec.command else None,
                        timeout=spec.timeout)
        try:
            value = resolve(source, os.environ)
        except SecretError as exc:
            raise CorralError(str(exc), "fix its source, or export without "
                              "--include-secrets (the pods then refer to Secrets you "
                              "create)") from None
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": meta(names[secret], plan.names.fleet_labels(), plan.namespace),
                    "stringData": {SECRET_KEY: value}})
    return out


def create_commands(plan: Plan, names: dict[str, str], wanted: list[str]) -> list[str]:
    """The README's ``kubectl create secret`` line for each Secret the pods refer to."""
    ns = f" --namespace {shlex.quote(plan.namespace)}" if plan.namespace else ""
    lines = []
    for secret in wanted:
        spec = plan.manifest.secrets[secret]
        if spec.environment is not None:
            value = f'"${spec.environment}"'
        elif spec.file is not None:
            value = f'"$(cat {shlex.quote(spec.file)})"'
        elif spec.env_file is not None:
            key = re.escape(spec.key or secret)
            value = (f"\"$(sed -n 's/^{key}=//p' {shlex.quote(spec.env_file)})\""
                     "  # its value in the env file, unquoted")
        else:
            value = f'"$({shlex.join(spec.command or [])})"'
        lines.append(f"kubectl create secret generic {names[secret]}{ns} "
                     f"--from-literal={SECRET_KEY}={value}")
    return lines

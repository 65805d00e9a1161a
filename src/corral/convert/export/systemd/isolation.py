"""What each isolation level becomes in a unit. ``process``: the command as is. ``venv``: the
unit builds its own venv in a ``StateDirectory=`` with an ``ExecStartPre=`` that is idempotent
(it reinstalls only when the requirements' hash changed), so the exported files need nothing
built beforehand on the target host. ``sandbox``: systemd's own walls. ``container``:
``podman run``. ``vm``: a process, reported."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from corral.convert.export.systemd.quoting import argument, command

if TYPE_CHECKING:
    from corral.convert.report import Report
    from corral.manifest.spec import Agent, Manifest

ENV = "/usr/bin/env"
SH = "/bin/sh"
# bubblewrap's walls as systemd's settings (systemd.exec(5))
SANDBOX = ["ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes",
           "PrivateDevices=yes", "NoNewPrivileges=yes", "ProtectKernelTunables=yes",
           "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
           "RestrictSUIDSGID=yes", "LockPersonality=yes", "ProtectClock=yes",
           "ProtectHostname=yes", "RestrictNamespaces=yes"]

VENV_BUILD = (
    'set -e; v="$STATE_DIRECTORY/venv-{agent}"; '
    '[ -x "$v/bin/python" ] || {python} -m venv "$v"; '
    'want=$(cat {inputs} 2>/dev/null | sha256sum); '
    '[ "$(cat "$v/.corral-inputs" 2>/dev/null)" = "$want" ] || '
    '{{ "$v/bin/pip" install -q {install}; echo "$want" > "$v/.corral-inputs"; }}')


def venv_lines(manifest: Manifest, name: str, agent: Agent, report: Report) -> list[str]:
    """``ExecStartPre=`` that makes or refreshes the agent's venv, and its ``PATH``."""
    from corral.drivers.host.options import node_block, venv_block

    if node_block(agent) is not None:
        report.dropped(name, "node", "the node_modules corral installs with npm ci is not "
                       "built by the unit; run npm ci in the workdir before starting it")
    venv = venv_block(agent)
    inputs, install = [], []
    if venv is not None and venv.requirements:
        inputs.append(venv.requirements)
        install += ["-r", venv.requirements]
    if venv is not None and venv.pyproject:
        inputs.append(venv.pyproject)
        install.append(os.path.dirname(venv.pyproject))
    install += list(venv.packages) if venv is not None else []
    python = f"python{venv.python}" if venv is not None and venv.python else "python3"
    report.changed(name, "isolation", "venv: built by the unit's ExecStartPre= with python "
                   "-m venv and pip (corral uses uv) in the state directory, reinstalled "
                   "when the requirements' hash changes")
    script = VENV_BUILD.format(
        agent=name, python=python,
        inputs=" ".join(_sh(p) for p in inputs) or "/dev/null",
        install=" ".join(_sh(p) for p in install) or "pip")
    path = f"/var/lib/{manifest.name}/venv-{name}"
    return [f"StateDirectory={manifest.name}",
            f"ExecStartPre={command([SH, '-c', script])}",
            f'Environment="VIRTUAL_ENV={path}" '
            f'"PATH={path}/bin:/usr/local/bin:/usr/bin:/bin"']


def _sh(text: str) -> str:
    import shlex

    return shlex.quote(text)


def sandbox_lines(manifest: Manifest, name: str, agent: Agent, report: Report) -> list[str]:
    """systemd's sandboxing for ``isolation: sandbox``; ``network``: none → a private
    network namespace, ``loopback:NAME`` → one namespace shared by the group's units
    (``JoinsNamespaceOf=`` the group's first agent), host → the host's."""
    from corral.manifest.spec import loopback_group

    lines = list(SANDBOX)
    writable = [agent.workdir] + [v.target for v in agent.volumes if not v.read_only]
    lines.append("ReadWritePaths=" + " ".join(argument(p) for p in writable))
    network = agent.network or "none"
    group = loopback_group(network)
    if network == "none" or group is not None:
        lines.append("PrivateNetwork=yes")
    if group is not None:
        first = min(n for n, a in manifest.agents.items()
                    if loopback_group(a.network) == group)
        if first != name:
            lines.append(f"JoinsNamespaceOf={manifest.name}-{first}@1.service")
            report.changed(name, "network", f"loopback:{group}: joins the network namespace "
                           f"of {first}'s first instance (JoinsNamespaceOf=)")
    report.changed(name, "isolation", "sandbox: systemd's sandboxing (ProtectSystem=strict, "
                   "PrivateTmp=, PrivateDevices=, NoNewPrivileges=...) instead of bubblewrap: "
                   "the file system stays visible read-only (the project dir is not hidden, "
                   "secret sources and env files are not masked), no own user namespace")
    return lines


def container_argv(manifest: Manifest, name: str, agent: Agent, report: Report) -> list[str]:
    """``podman run`` of the agent's image, named after the instance, removed at stop."""
    from corral.convert import images

    image = images.for_agent(manifest, name, report)
    if image.built:
        report.changed(name, "container.build", f"the unit runs {image.ref}: build it on "
                       "the target host first (podman build), the unit does not")
    argv = ["/usr/bin/podman", "run", "--rm", "--replace", "--name",
            f"{manifest.name}-{name}-%i", "--env-host"]
    for v in agent.volumes:
        src = f"{manifest.name}-{os.path.basename(v.source)}" if v.named else v.source
        argv += ["--volume", f"{src}:{v.target}{':ro' if v.read_only else ''}"]
    return [*argv, image.ref, *agent.argv]


def exec_argv(agent: Agent) -> list[str]:
    """The agent's argv for ``ExecStart=``: systemd looks a bare program name up in its own
    fixed path, not ``PATH``, so ``env`` runs it (the venv's ``PATH`` applies); a relative path
    is made absolute from the workdir."""
    argv = list(agent.argv)
    if "/" in argv[0] and not argv[0].startswith("/"):
        argv[0] = os.path.normpath(os.path.join(agent.workdir, argv[0]))
    return argv if argv[0].startswith("/") else [ENV, *argv]

"""``corral export systemd``: a template unit per agent, a timer per scheduled agent, the
fleet's ``PROJECT.target`` that wants every instance, and ``install.sh``."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, ClassVar

from corral.convert.base import Bundle, ExportOptions
from corral.convert.report import Report
from corral.errors import UsageError

if TYPE_CHECKING:
    from corral.manifest.spec import Manifest

DEFAULT_VERSION = 252  # Debian 12's, when no systemctl says otherwise
SETTINGS = ("systemd-version",)

INSTALL = """\
#!/bin/sh
# Installs the {project} fleet's units and starts it: ./install.sh [UNIT_DIR]
# (default /etc/systemd/system; for a user manager: ~/.config/systemd/user and
# SYSTEMCTL="systemctl --user"). Remove: systemctl disable --now {project}.target
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${{1:-/etc/systemd/system}}
systemctl=${{SYSTEMCTL:-systemctl}}
mkdir -p "$dir"
for unit in {units}; do
    install -m 0644 "$here/units/$unit" "$dir/$unit"
done
$systemctl daemon-reload
$systemctl enable --now {project}.target
"""


def local_version() -> int:
    """The version ``systemctl --version`` reports, else ``DEFAULT_VERSION``."""
    program = shutil.which("systemctl")
    if program is None:
        return DEFAULT_VERSION
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
        return int(out.split()[1])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return DEFAULT_VERSION


def _version(options: ExportOptions) -> int:
    for key in options.settings:
        if key not in SETTINGS:
            raise UsageError(f"--set {key}: not a systemd export setting",
                             f"use one of {', '.join(SETTINGS)}")
    text = options.settings.get("systemd-version")
    if text is None:
        return local_version()
    if not text.isdigit() or int(text) < 200:
        raise UsageError(f"--set systemd-version={text}: not a systemd version",
                         "give the target's version as a number, e.g. 252 or 255")
    return int(text)


class SystemdExporter:
    name: ClassVar[str] = "systemd"
    summary: ClassVar[str] = "systemd template units, timers and a target, with health gating"

    def export(self, manifest: Manifest, options: ExportOptions) -> Bundle:
        from corral.convert.export.systemd import secrets, service, timers

        version = _version(options)
        report = Report("export systemd")
        bundle = Bundle(report)
        wants: list[str] = []
        for name, agent in manifest.agents.items():
            creds, wrap = secrets.credentials(manifest, name, report)
            bundle.files[f"units/{service.unit_name(manifest.name, name)}"] = service.render(
                manifest, name, version, creds, wrap, report)
            if agent.schedule is not None:
                timer = f"{manifest.name}-{name}@.timer"
                bundle.files[f"units/{timer}"] = timers.render(manifest.name, name,
                                                               agent.schedule, report)
                wants += [f"{manifest.name}-{name}@{i}.timer"
                          for i in range(1, agent.replicas + 1)]
            else:
                wants += service.instances(manifest, name)
            if agent.on.fatal or agent.on.restart or agent.on.oom:
                report.dropped(name, "on", "hooks on events: use OnFailure= with a unit of "
                               "your own")
            if agent.labels:
                report.dropped(name, "labels", "a unit has no labels")
            if agent.trust == "untrusted" and agent.isolation not in ("sandbox", "container",
                                                                       "vm"):
                report.changed(name, "trust", "untrusted: no walls beyond its isolation")
        if options.include_secrets:
            report.changed(None, "--include-secrets", "secret values are never written: "
                           "units load them from their files")
        bundle.files[f"units/{manifest.name}.target"] = "\n".join([
            "[Unit]", f"Description=the {manifest.name} fleet (corral export systemd)",
            *(f"Wants={w}" for w in wants), "",
            "[Install]", "WantedBy=multi-user.target", ""])
        units = " ".join(sorted(p.split("/", 1)[1] for p in bundle.files))
        bundle.files["install.sh"] = INSTALL.format(project=manifest.name, units=units)
        bundle.executable.add("install.sh")
        report.dropped(None, "logs", "the journal keeps the logs (journalctl -u "
                       f"'{manifest.name}-*'); logs.max_size/keep/max_age: journald.conf")
        if manifest.logs.forward:
            report.dropped(None, "logs.forward", "corral's forwarder does not run under "
                           "systemd: the journal forwards to syslog (ForwardToSyslog=) or a "
                           "collector reads it")
        if manifest.metrics.port is not None:
            report.dropped(None, "metrics", "corral's metrics endpoint is the daemon's; "
                           "systemd has none")
        if manifest.dashboard.port is not None:
            report.dropped(None, "dashboard", "the dashboard is the daemon's; systemd has none")
        report.notes.append(f"systemd {version} (--set systemd-version=N for another host)")
        return bundle

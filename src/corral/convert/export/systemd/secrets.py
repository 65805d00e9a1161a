"""Secrets as systemd credentials. A file source is ``LoadCredential=TARGET:PATH``: systemd
copies it into ``$CREDENTIALS_DIRECTORY`` (private to the unit, on a ramfs), and
``CORRAL_SECRETS_DIR`` points there (``%d``), so the agent finds its files where corral
puts them. A secret used as a variable is read from its credential by a ``/bin/sh`` wrapper
in ``ExecStart=`` that exports it and ``exec``s the command, so its value is in no unit file.
Other sources (an environment variable, a key of a .env file, a command) have no file
systemd can load: reported, with the way to make one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.convert.report import Report
    from corral.manifest.spec import Manifest

WRAPPER = 'for v; do [ "$v" = -- ] && break; export "${v%%=*}=$(cat "$CREDENTIALS_DIRECTORY/${v#*=}")"; shift; done; shift; exec "$@"'  # noqa: E501


def credentials(manifest: Manifest, name: str, report: Report) -> tuple[list[str], list[str]]:
    """The unit's ``LoadCredential=`` lines and the argv prefix that sets env secrets."""
    from corral.convert.export.systemd.quoting import specifiers

    agent = manifest.agents[name]
    lines: list[str] = []
    env_pairs: list[str] = []
    for use in agent.secrets:
        source = manifest.secrets.get(use.source)
        target = use.target or use.source
        if source is None or source.file is None:
            how = "no such secret" if source is None else "its source is not a file"
            report.dropped(name, f"secrets.{use.source}", f"{how}: systemd loads credentials "
                           f"from files; put the value in a root-only file and declare "
                           f"file: for it (LoadCredential={target}:PATH)")
            continue
        path = source.file if os.path.isabs(source.file) else os.path.join(
            manifest.project_dir, source.file)
        cred = use.env.lower() if use.env else target
        lines.append(f"LoadCredential={cred}:{specifiers(path)}")
        if use.env:
            env_pairs.append(f"{use.env}={cred}")
        if agent.isolation == "container":
            report.dropped(name, f"secrets.{use.source}", "the credential is loaded on the "
                           "host, not mounted into the container: add --volume "
                           "%d/NAME:/run/secrets/NAME:ro to the podman line yourself")
        elif agent.isolation == "sandbox" and not use.env:
            report.changed(name, f"secrets.{use.source}", "the file is in "
                           "$CREDENTIALS_DIRECTORY (CORRAL_SECRETS_DIR), not /run/secrets")
    if lines:
        lines.insert(0, 'Environment="CORRAL_SECRETS_DIR=%d"')
    wrap = ["/bin/sh", "-c", WRAPPER, "secret-env", *env_pairs, "--"] if env_pairs else []
    return lines, wrap

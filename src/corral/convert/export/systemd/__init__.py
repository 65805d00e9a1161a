"""``corral export systemd`` (``exporter.SystemdExporter``), in parts: ``service`` (the
template unit), ``probes`` (readiness as an ``ExecStartPost=`` wait), ``isolation`` (venv,
sandbox, container), ``secrets`` (credentials), ``timers`` and ``calendar`` (cron to
``OnCalendar=``), ``quoting``."""

from corral.convert.export.systemd.exporter import SystemdExporter

__all__ = ["SystemdExporter"]

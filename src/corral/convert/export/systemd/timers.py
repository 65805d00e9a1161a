"""Schedules as timer units: ``PROJECT-AGENT@.timer`` starts ``PROJECT-AGENT@%i.service`` (a
oneshot). A timer never starts a unit that is still running, which is ``overlap: skip``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.convert.export.systemd.calendar import on_calendar

if TYPE_CHECKING:
    from corral.convert.report import Report
    from corral.manifest.spec import Schedule


def render(project: str, name: str, schedule: Schedule, report: Report) -> str:
    lines = ["[Unit]", f"Description={project} {name} schedule (instance %i)",
             f"PartOf={project}.target", "", "[Timer]"]
    if schedule.cron is not None:
        lines += [f"OnCalendar={e}" for e in on_calendar(schedule.cron, schedule.timezone)]
        if schedule.run_on_start:
            lines.append("OnActiveSec=0")
        if schedule.catch_up:
            lines.append("Persistent=yes")
    else:
        assert schedule.every is not None
        lines += [f"OnActiveSec={0 if schedule.run_on_start else schedule.every:g}s",
                  f"OnUnitActiveSec={schedule.every:g}s"]
        if schedule.catch_up:
            report.changed(name, "schedule.catch_up", "Persistent= applies to OnCalendar= "
                           "only: a period timer counts from its activation after downtime")
    if schedule.jitter:
        lines.append(f"RandomizedDelaySec={schedule.jitter:g}s")
    lines.append("AccuracySec=1s")
    if schedule.overlap != "skip":
        report.changed(name, "schedule.overlap", f"{schedule.overlap}: a timer skips a run "
                       "while the last one still goes (skip)")
    return "\n".join(lines) + "\n"

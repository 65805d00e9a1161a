"""Which workload runs an agent, and its restart, replicas and schedule. As the runtime sees
it: a scheduled agent's runs are one-shots (a CronJob); an agent that runs to completion (a
``compute`` agent, an agent that is never restarted, or one that another waits on to
complete) whose restart policy lets it end (``no``, ``on-failure``) is a Job; every other
agent is long-running, a Deployment (whose pods Kubernetes always restarts)."""

from __future__ import annotations

from typing import Any

from corral.convert.export.kubernetes.plan import Plan
from corral.manifest.spec import Agent, Backoff, Schedule

COMPLETION = ("completed", "completed_successfully")
ENDS = ("no", "on-failure")
UNLIMITED = 2**31 - 1  # backoffLimit is an int32; corral's unlimited restarts


def kind(plan: Plan, name: str) -> str:
    agent = plan.agent(name)
    if agent.schedule is not None:
        return "CronJob"
    if agent.restart.policy not in ENDS:
        return "Deployment"
    waited = any(how.condition in COMPLETION for other in plan.manifest.agents.values()
                 for dep, how in other.depends_on.items() if dep == name)
    if agent.class_ == "compute" or agent.restart.policy == "no" or waited:
        return "Job"
    return "Deployment"


def _backoff_report(plan: Plan, name: str, agent: Agent) -> None:
    if agent.restart.backoff != Backoff():
        plan.report.changed(name, "restart.backoff", "the kubelet's own back-off (10s, "
                            "doubling to 5 min, reset after 10 min up) replaces it")


def deployment_restart(plan: Plan, name: str) -> None:
    agent = plan.agent(name)
    r = agent.restart
    if r.policy == "on-failure":
        plan.report.changed(name, "restart.policy", "on-failure: a Deployment's pods are "
                            "restarted after every exit, a zero one too")
    if r.max_restarts is not None:
        plan.report.dropped(name, "restart.max_restarts", "a Deployment restarts its pods "
                            "without end (CrashLoopBackOff); no crash-loop limit")
    _backoff_report(plan, name, agent)


def job_spec(plan: Plan, name: str, template: dict[str, Any]) -> dict[str, Any]:
    """A Job's spec: each replica one completion, run side by side; backoffLimit from
    ``max_restarts`` (``no``: none)."""
    agent = plan.agent(name)
    r = agent.restart
    spec: dict[str, Any] = {"parallelism": agent.replicas, "completions": max(1, agent.replicas)}
    if r.policy == "no":
        template["spec"]["restartPolicy"] = "Never"
        spec["backoffLimit"] = 0
    else:
        template["spec"]["restartPolicy"] = "OnFailure"
        spec["backoffLimit"] = UNLIMITED if r.max_restarts is None else r.max_restarts
        if r.max_restarts is not None:
            plan.report.changed(name, "restart.window", "backoffLimit counts every retry of "
                                f"a run, not those within {r.window:g}s")
        _backoff_report(plan, name, agent)
    if agent.replicas == 0:
        spec["suspend"] = True
        plan.report.changed(name, "replicas", "0: the Job is suspended")
    spec["template"] = template
    return spec


def cron(plan: Plan, name: str, s: Schedule) -> str:
    """``cron`` as is; ``every`` as the cron step that equals it, else the nearest one."""
    if s.cron is not None:
        return s.cron
    assert s.every is not None
    every = s.every
    minutes = max(1, round(every / 60))
    steps = [m for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)] + \
        [60 * h for h in (1, 2, 3, 4, 6, 8, 12, 24)]
    step = min(steps, key=lambda m: (abs(m - minutes), m))
    if step < 60:
        expr = "* * * * *" if step == 1 else f"*/{step} * * * *"
    elif step < 24 * 60:
        expr = "0 * * * *" if step == 60 else f"0 */{step // 60} * * *"
    else:
        expr = "0 0 * * *"
    if step * 60 != every:
        plan.report.changed(name, "schedule.every", f"{every:g}s is not a step cron can say: "
                            f"{expr} (every {step} min)")
    else:
        plan.report.changed(name, "schedule.every", f"{expr}: on the clock's steps, not "
                            "counted from the fleet's start")
    return expr


def cronjob_spec(plan: Plan, name: str, template: dict[str, Any]) -> dict[str, Any]:
    agent = plan.agent(name)
    s = agent.schedule
    assert s is not None
    spec: dict[str, Any] = {"schedule": cron(plan, name, s)}
    if s.timezone is not None:
        spec["timeZone"] = s.timezone
    elif s.cron is not None:
        plan.report.changed(name, "schedule.timezone", "none: corral's is the host's local "
                            "time, a CronJob's the controller's (UTC on most clusters)")
    spec["concurrencyPolicy"] = {"skip": "Forbid", "queue": "Forbid",
                                 "replace": "Replace"}[s.overlap]
    if s.overlap == "queue":
        plan.report.changed(name, "schedule.overlap", "queue: a run that comes while one "
                            "goes is skipped (concurrencyPolicy Forbid), not queued")
    if not s.catch_up:
        # a run more than this late (the controller was down) is skipped, not made late
        spec["startingDeadlineSeconds"] = 60
    else:
        plan.report.changed(name, "schedule.catch_up", "the controller makes the last missed "
                            "run on its return (none after 100 missed)")
    if s.jitter:
        plan.report.dropped(name, "schedule.jitter", "a CronJob starts on its time")
    if s.run_on_start:
        plan.report.dropped(name, "schedule.run_on_start", "a CronJob runs at its times "
                            f"only: kubectl create job --from=cronjob/"
                            f"{plan.names.of_agent(name)} NAME runs it now")
    job = job_spec(plan, name, template)
    if job.pop("suspend", False):
        spec["suspend"] = True
    spec["jobTemplate"] = {"metadata": {"labels": template["metadata"]["labels"]},
                           "spec": job}
    return spec

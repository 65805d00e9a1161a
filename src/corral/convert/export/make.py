"""``corral export make``: the fleet as a Makefile, the seed's command centre (§3.1) done right.

Make is a dependency engine, not a supervisor, so the export uses it for what it is good at:
``up-AGENT`` has its dependencies as prerequisites (make starts them first, in parallel under
``-j`` where the graph allows), a venv's stamp has its requirements files as prerequisites (an
unchanged one is not rebuilt, a changed one is), and everything that needs a running process's
state (PID files, readiness, exit statuses, stopping a process group) is the helper script's
(``make_script``), so each target is safe to repeat. What make cannot be (a restarter, a
scheduler, a cgroup) is said in the report, per agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from corral.convert.base import Bundle, ExportOptions
from corral.convert.export import make_fields
from corral.convert.export.make_script import SCRIPT
from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Manifest

JOB_CONDITIONS = ("completed", "completed_successfully")
# variables of make's environment every agent gets, as corral's clean base (environ.BASE)
BASE = "PATH HOME USER LOGNAME SHELL LANG LANGUAGE TZ TMPDIR LC_% XDG_%"


def _word(manifest: Manifest, path: str) -> str:
    return '"' + make_fields.path(manifest, path) + '"'


def _order(manifest: Manifest) -> list[str]:
    """Agents with their dependencies first (the loader refused cycles)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        for dep in manifest.agents[name].depends_on:
            if dep in manifest.agents:
                visit(dep)
        done.append(name)

    for name in manifest.agents:
        visit(name)
    return done


def _jobs(manifest: Manifest) -> set[str]:
    """Agents that run to completion: restart ``no``, or waited on to complete."""
    jobs = {n for n, a in manifest.agents.items() if a.restart.policy == "no"}
    for agent in manifest.agents.values():
        jobs |= {d for d, dep in agent.depends_on.items() if dep.condition in JOB_CONDITIONS}
    return jobs


class MakeExporter:
    name: ClassVar[str] = "make"
    summary: ClassVar[str] = ("a Makefile: up, down, ps, logs, per-agent targets, venv "
                              "builds; agents run in the background with PID files")

    def export(self, manifest: Manifest, options: ExportOptions) -> Bundle:
        report = Report("export make")
        bundle = Bundle(report)
        agents = [n for n in _order(manifest) if make_fields.exported(manifest, n, report)]
        jobs = _jobs(manifest)
        lines = self._head(manifest, options)
        started = [n for n in agents if manifest.agents[n].schedule is None
                   or manifest.agents[n].schedule.run_on_start]  # type: ignore[union-attr]
        lines += ["up: " + " ".join(f"up-{n}" for n in started) + " ## start every agent "
                  "(dependencies first, waiting for readiness)", ""]
        lines += ["down: ## stop every agent (dependents first)"]
        for name in reversed(agents):
            lines += [f"\t@$(MAKE) --no-print-directory down-{name}"]
        instances = [f"{n}.{i}" for n in agents for i in range(1, manifest.agents[n].replicas + 1)]
        lines += ["", "ps: ## each instance: running (pid), exited (status) or stopped",
                  "\t@$(RUN) ps " + " ".join(instances), "",
                  "logs: ## the last $(LINES) lines of every log (FOLLOW=1 to follow)",
                  "\t@mkdir -p $(STATE)/logs && cd $(STATE)/logs && "
                  "tail -n $(LINES) $(if $(FOLLOW),-F) "
                  + " ".join(f"{i}.log" for i in instances) + " 2>/dev/null || true", ""]
        for name in agents:
            lines += self._agent(manifest, name, name in jobs, bundle)
        phony = ["help", "up", "down", "ps", "logs"]
        for name in agents:
            phony += [f"{t}-{name}" for t in ("up", "down", "logs", "restart", "done", "exited")]
        lines += [".PHONY: " + " ".join(phony), ""]
        bundle.files["Makefile"] = "\n".join(lines)
        bundle.files["instance.sh"] = SCRIPT
        bundle.executable.add("instance.sh")
        make_fields.fleet_losses(manifest, report)
        report.notes.append("run it with: make -C DIR up (make help lists the targets)")
        return bundle

    def _head(self, manifest: Manifest, options: ExportOptions) -> list[str]:
        python = options.settings.get("python", "python3")
        return [
            f"# The {manifest.name} fleet, written by `corral export make` from its corral.yaml.",
            "# `make help` lists the targets. Agents run in the background: PID files, exit",
            "# statuses and logs are under $(STATE). Re-export after changing corral.yaml.",
            "SHELL := /bin/bash",
            ".DEFAULT_GOAL := help",
            "HERE := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))",
            f"PROJECT_DIR ?= {manifest.project_dir.replace('$', '$$')}",
            "STATE ?= $(HERE)/.make",
            "# seconds an agent may take to become ready; a dependent waits for a job",
            "READY_TIMEOUT ?= 60",
            "WAIT_TIMEOUT ?= 600",
            "# the interpreter that builds the venvs",
            f"PYTHON ?= {python}",
            "LINES ?= 50",
            "RUN := STATE=\"$(STATE)\" \"$(HERE)/instance.sh\"",
            "# what each agent gets of make's environment (corral's clean base)",
            f"BASE_ENV := $(foreach v,$(filter {BASE},$(.VARIABLES)),"
            "$(if $(findstring environment,$(origin $v)),$v)) SHELL",
            "",
            "help: ## this list",
            "\t@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | "
            "sed -E 's/^([^:]+):.*## (.*)/\\1\\t\\2/' | expand -t 24",
            "",
        ]

    def _agent(self, manifest: Manifest, name: str, job: bool, bundle: Bundle) -> list[str]:
        agent = manifest.agents[name]
        report = bundle.report
        env_path = f"env/{name}.sh"
        bundle.files[env_path], env_names = make_fields.env_script(manifest, name, report)
        keep = make_fields.kept(agent, name, report)
        secrets = make_fields.secrets(manifest, agent, name, report)
        argv, prereqs, build = make_fields.command(manifest, name, report, bundle.files,
                                                   env_names)
        make_fields.agent_losses(manifest.agents, name, report)
        for dep, how in agent.depends_on.items():
            if dep not in manifest.agents:
                continue
            if how.condition == "completed_successfully":
                prereqs.append(f"done-{dep}")
            elif how.condition == "completed":
                prereqs.append(f"exited-{dep}")
            else:
                prereqs.append(f"up-{dep}")
        about = agent.description or " ".join(agent.command)[:60]
        workdir = _word(manifest, agent.workdir)
        envfile = '"$(HERE)/' + env_path + '"'
        variables = f"KEEP=\"$(BASE_ENV) {keep}\""
        if secrets:
            variables += f" SECRETS={make_fields.quote(secrets)}"
        out = [f"up-{name}: {' '.join(prereqs)} ## start {name}: {about}".replace("  #", " #")]
        out += build
        count = agent.replicas
        for i in range(1, count + 1):
            out.append(f"\t@{variables} $(RUN) start {name}.{i} {workdir} {envfile} "
                       f"{'job' if job else 'service'} -- " + " ".join(argv))
        probe = make_fields.readiness(agent, name, report)
        if probe is not None:
            kind, timing, words = probe
            said = " ".join(map(make_fields.quote, words))
            for i in range(1, count + 1):
                out.append(f"\t@{variables} $(RUN) ready {name}.{i} {workdir} {envfile} "
                           f"$(READY_TIMEOUT) {timing} {kind} {said}")
        stop = f"{agent.stop.signal} {agent.stop.timeout:g}"
        out += ["", f"down-{name}: ## stop {name} ({agent.stop.signal}, then SIGKILL after "
                f"{agent.stop.timeout:g}s)"]
        out += [f"\t@$(RUN) stop {name}.{i} {stop}" for i in range(1, count + 1)]
        out += ["", f"restart-{name}: ## stop and start {name}",
                f"\t@$(MAKE) --no-print-directory down-{name}",
                f"\t@$(MAKE) --no-print-directory up-{name}", "",
                f"logs-{name}: ## the last $(LINES) lines of {name}'s log (FOLLOW=1 to follow)",
                "\t@cd $(STATE)/logs 2>/dev/null && tail -n $(LINES) $(if $(FOLLOW),-F) "
                + " ".join(f"{name}.{i}.log" for i in range(1, count + 1))
                + " 2>/dev/null || true", ""]
        for target, want in (("done", "success"), ("exited", "any")):
            out += [f"{target}-{name}: up-{name}"]
            out += [f"\t@$(RUN) done {name}.{i} $(WAIT_TIMEOUT) {want}"
                    for i in range(1, count + 1)]
            out.append("")
        out += make_fields.venv_rules(manifest, agent, name)
        return out


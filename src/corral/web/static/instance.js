// One instance: its state now, CPU and memory sparklines, its buttons, and its history from
// the kept events: restarts (and why), exits (code, signal, OOM) and probe results.

import { call, query } from "./api.js";
import { buttons } from "./control.js";
import { duration, el, size, tone } from "./fleet.js";
import { sparkline } from "./spark.js";

const EXITS = new Set(["exited", "stopped", "backoff", "fatal"]);

/** What an event says of an instance: a restart, an exit, a probe result, or another change. */
export function kind(event) {
  if (event.event === "restart") return "restart";
  if (event.event === "healthy" || event.event === "unhealthy") return "probe";
  if (event.event === "oom" || event.event === "fatal") return "exit";
  if (event.event === "state" && EXITS.has(event.state) && ["running", "stopping"].includes(event.previous)) return "exit";
  return "state";
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 23);
}

function exitText(e) {
  if (e.oom_killed) return "OOM killed";
  if (e.exit_signal) return `signal ${e.exit_signal}`;
  return e.exit_code === null || e.exit_code === undefined ? "" : `code ${e.exit_code}`;
}

export class Instance {
  constructor(fleet, root) {
    this.fleet = fleet;
    this.root = root;
    this.name = "";
    this.due = false;
    for (const kind of ["change", "usage", "journal"]) {
      fleet.addEventListener(kind, (e) => {
        if (e.detail.names === null || e.detail.names.includes(this.name)) this.later();
      });
    }
  }

  async show(name) {
    this.name = name;
    this.render();
    const row = this.fleet.rows.get(name);
    const agent = row ? row.agent : name.split(".")[0];
    try {
      this.fleet.remember(await call("GET", "/v1/journal" + query([["agent", agent], ["tail", "1000"]])));
    } catch { /* the agent has no events yet, or went away */ }
  }

  later() {
    if (this.due || this.root.hidden) return;
    this.due = true;
    requestAnimationFrame(() => { this.due = false; this.render(); });
  }

  render() {
    const name = this.name;
    const row = this.fleet.rows.get(name);
    if (!row) {
      this.root.replaceChildren(el("h2", {}, name), el("p", {}, "No such instance in the fleet now."));
      return;
    }
    const series = this.fleet.usage.get(name) || [];
    const running = row.state === "running" && row.started_at;
    const events = this.fleet.journal.filter((e) => e.instance === name);
    const restarts = events.filter((e) => kind(e) === "restart");
    const exits = events.filter((e) => kind(e) === "exit");
    const probes = events.filter((e) => kind(e) === "probe");
    const facts = [
      ["state", row.state], ["health", row.health], ["pid", row.pid ?? "-"],
      ["uptime", running ? duration(Date.now() / 1000 - row.started_at) : "-"],
      ["restarts", row.restarts], ["last exit", exitText(row) || "-"],
      ["isolation", row.isolation || "-"], ["reason", row.reason || "-"],
    ];
    this.root.replaceChildren(
      el("div", { class: "instance-head", "data-tone": tone(row) },
        el("h2", {}, el("a", { href: "#fleet" }, "Fleet"), " / ", name),
        buttons([name], name)),
      el("dl", { class: "facts", id: "instance-facts" },
        facts.map(([k, v]) => el("div", { "data-fact": k }, el("dt", {}, k), el("dd", {}, v)))),
      el("div", { class: "sparks" },
        sparkline(series.map((s) => s.cpu), { label: "CPU", className: "spark-cpu",
          format: (v) => `${v.toFixed(1)}%` }),
        sparkline(series.map((s) => s.rss), { label: "memory", className: "spark-mem", format: size })),
      el("div", { class: "history" },
        this.list("Restarts", "restarts", restarts, (e) => [when(e.time), `restart ${e.restarts}`,
          [exitText(e), e.reason].filter(Boolean).join(" · ")]),
        this.list("Exits", "exits", exits, (e) => [when(e.time), `${e.previous} → ${e.state}`,
          exitText(e) || e.reason]),
        this.list("Probe results", "probes", probes, (e) => [when(e.time), e.event, e.reason || "probe passing"])),
    );
  }

  list(title, id, events, cells) {
    const shown = events.slice(-50).reverse();
    return el("section", { class: "events", id: `events-${id}` },
      el("h3", {}, `${title} `, el("span", { class: "count" }, `(${events.length})`)),
      shown.length
        ? el("table", {}, el("tbody", {}, shown.map((e) =>
          el("tr", { "data-event": e.event }, cells(e).map((c) => el("td", {}, c ?? ""))))))
        : el("p", { class: "none" }, "none kept"));
  }
}

// The fleet's table: an agent's line (its replicas and buttons), then one line per instance,
// updated in place from the state events and the usage samples.

import { buttons, scaler } from "./control.js";
import { duration, el, size, tone } from "./fleet.js";

const COLUMNS = ["name", "state", "health", "restarts", "uptime", "cpu", "mem", "pid", "exit", "reason"];

export class Table {
  constructor(fleet, root) {
    this.fleet = fleet;
    this.root = root;
    this.body = el("tbody");
    root.append(el("table", { class: "fleet", id: "fleet-table" },
      el("thead", {}, el("tr", {}, COLUMNS.map((c) => el("th", { class: `col-${c}` }, c)),
        el("th", { class: "col-actions" }, ""))),
      this.body));
    this.lines = new Map();
    this.shape = "";
    fleet.addEventListener("change", (e) => this.render(e.detail.names));
    fleet.addEventListener("usage", () => this.render(fleet.names()));
    setInterval(() => this.render(fleet.names()), 1000); // uptimes
  }

  /** `names`: the instances that changed (their cells only); null: any of them, or the
   * fleet's shape (instances come or go, replicas change). */
  render(names) {
    const fleet = this.fleet;
    if (names === null) {
      const shape = JSON.stringify([fleet.names(), fleet.agentNames(),
        fleet.agentNames().map((a) => fleet.agents[a]?.replicas)]);
      if (shape !== this.shape) this.rebuild(shape);
    }
    for (const name of names || fleet.names()) this.fill(name);
  }

  rebuild(shape) {
    this.shape = shape;
    this.lines.clear();
    this.body.replaceChildren();
    const fleet = this.fleet;
    for (const agent of fleet.agentNames()) {
      const instances = fleet.instancesOf(agent);
      const replicas = fleet.agents[agent]?.replicas ?? instances.length;
      this.body.append(el("tr", { class: "agent", "data-agent": agent },
        el("th", { colspan: COLUMNS.length - 1, scope: "rowgroup" }, agent,
          el("span", { class: "count" }, ` ${instances.length} instance${instances.length === 1 ? "" : "s"}`)),
        el("td", { class: "actions", colspan: 2 }, scaler(agent, replicas), buttons([agent], agent))));
      for (const name of instances) {
        const cells = Object.fromEntries(COLUMNS.map((c) => [c, el("td", { class: `col-${c}` })]));
        cells.name.append(el("a", { href: `#instance/${encodeURIComponent(name)}` }, name));
        const line = el("tr", { class: "instance", "data-name": name },
          COLUMNS.map((c) => cells[c]), el("td", { class: "actions" }, buttons([name], name)));
        this.lines.set(name, { line, cells });
        this.body.append(line);
      }
    }
  }

  fill(name) {
    const found = this.lines.get(name);
    const row = this.fleet.rows.get(name);
    if (!found || !row) return;
    const { line, cells } = found;
    const use = this.fleet.latest(name);
    const running = row.state === "running" && row.started_at;
    const text = {
      state: row.state, health: row.health, restarts: row.restarts,
      uptime: running ? duration(Date.now() / 1000 - row.started_at) : "-",
      cpu: running && use && use.cpu !== null ? `${use.cpu.toFixed(1)}%` : "-",
      mem: running && use ? size(use.rss) : "-",
      pid: row.pid ?? "-",
      exit: row.oom_killed ? "OOM killed" : row.exit_signal ? `signal ${row.exit_signal}`
        : row.exit_code !== null && row.exit_code !== undefined ? `code ${row.exit_code}` : "-",
      reason: row.reason || "",
    };
    for (const [key, value] of Object.entries(text)) {
      if (cells[key].textContent !== String(value)) cells[key].textContent = String(value);
    }
    if (cells.reason.title !== text.reason) cells.reason.title = text.reason;
    // set only when changed: each write invalidates the table's style, and a large one's
    // layout costs tens of milliseconds
    const t = tone(row);
    if (line.dataset.tone !== t) line.dataset.tone = t;
    if (line.dataset.state !== row.state) line.dataset.state = row.state;
  }
}

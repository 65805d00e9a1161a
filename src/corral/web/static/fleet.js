// What the views show of the fleet: the daemon's rows (its status, then each state event),
// the agents' dependencies, the kept events (restarts, exits, probe results) and the usage
// samples behind the sparklines. Views subscribe to what they show: "change" (rows, agents),
// "usage" (a new sample of every running instance), "journal" (kept events came).

const SAMPLES = 120; // per instance: four minutes at one sample each two seconds
const KEPT_EVENTS = 5000;

export class Fleet extends EventTarget {
  constructor() {
    super();
    this.project = "";
    this.rows = new Map();
    this.agents = {};
    this.usage = new Map(); // name -> [{at, cpu (% of a core), rss}]
    this.journal = [];
    this.timings = []; // state events: when the daemon published each, when it was shown
    this.events = 0; // state events applied so far
    this.changedAt = new Map(); // name -> `events` at its last
  }

  changed(names, kind = "change") {
    this.dispatchEvent(new CustomEvent(kind, { detail: { names } }));
  }

  /**
   * The daemon's whole status: instances gone from it (removed, scaled down) go too.
   * `askedAt`: `this.events` when it was asked for; an instance a state event changed since
   * keeps what the event said (the status may be older than the event).
   */
  replace(status, askedAt = null) {
    this.project = status.project || "";
    this.agents = status.agents || {};
    const newer = new Map();
    if (askedAt !== null) {
      for (const [name, at] of this.changedAt) {
        if (at > askedAt && this.rows.has(name)) newer.set(name, this.rows.get(name));
      }
    }
    this.rows = new Map(status.instances.map((row) => [row.name, row]));
    for (const [name, row] of newer) if (this.rows.has(name)) this.rows.set(name, row);
    for (const name of [...this.changedAt.keys()]) if (!this.rows.has(name)) this.changedAt.delete(name);
    for (const name of [...this.usage.keys()]) if (!this.rows.has(name)) this.usage.delete(name);
    this.changed(null);
  }

  /** A state event: the instance's fields as they now are (a new instance too). */
  update(row) {
    const before = this.rows.get(row.name);
    this.rows.set(row.name, { ...(before || {}), ...row });
    this.events += 1;
    this.changedAt.set(row.name, this.events);
    this.changed(before ? [row.name] : null); // a new instance changes the table's shape
  }

  /** A /v1/usage reply: CPU as the share of a core since the last sample. */
  sample(reply) {
    const at = reply.time;
    for (const [name, use] of Object.entries(reply.instances)) {
      const series = this.usage.get(name) || [];
      const last = series[series.length - 1];
      let cpu = null;
      if (last && at > last.at && use.cpu_seconds >= last.cpuSeconds) {
        cpu = (100 * (use.cpu_seconds - last.cpuSeconds)) / (at - last.at);
      }
      series.push({ at, cpu, rss: use.rss_bytes, cpuSeconds: use.cpu_seconds });
      if (series.length > SAMPLES) series.shift();
      this.usage.set(name, series);
    }
    this.changed(null, "usage");
  }

  latest(name) {
    const series = this.usage.get(name);
    return series && series.length ? series[series.length - 1] : null;
  }

  /** Kept events, from /v1/journal or the stream, in id order and each once. */
  remember(events) {
    const last = this.journal.length ? this.journal[this.journal.length - 1].id : 0;
    if (events.every((e) => e.id > last)) {
      this.journal.push(...events); // the stream's: each newer than all before
    } else {
      const known = new Set(this.journal.map((e) => e.id));
      for (const event of events) if (!known.has(event.id)) this.journal.push(event);
      this.journal.sort((a, b) => a.id - b.id);
    }
    if (this.journal.length > KEPT_EVENTS) this.journal.splice(0, this.journal.length - KEPT_EVENTS);
    this.changed(events.map((e) => e.instance), "journal");
  }

  names() {
    return [...this.rows.values()]
      .sort((a, b) => (a.agent === b.agent ? a.index - b.index : a.agent < b.agent ? -1 : 1))
      .map((row) => row.name);
  }

  instancesOf(agent) {
    return this.names().filter((name) => this.rows.get(name).agent === agent);
  }

  agentNames() {
    return [...new Set([...Object.keys(this.agents), ...[...this.rows.values()].map((r) => r.agent)])]
      .sort();
  }
}

/** How a state reads at a glance: ok, busy, down, bad. */
export function tone(row) {
  if (!row) return "down";
  if (["fatal", "blocked"].includes(row.state) || row.health === "unhealthy") return "bad";
  if (row.state === "backoff") return "bad";
  if (row.state === "running") return "ok";
  if (row.state === "exited") return row.exit_code === 0 ? "ok" : "bad";
  if (["created", "waiting", "preparing", "starting", "stopping"].includes(row.state)) return "busy";
  return "down";
}

export function size(n) {
  if (n === null || n === undefined) return "-";
  if (n < 1024) return `${n}B`;
  let value = n / 1024;
  for (const unit of ["K", "M"]) {
    if (value < 1024) return `${value.toFixed(1)}${unit}`;
    value /= 1024;
  }
  return `${value.toFixed(1)}G`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** An element with attributes and children (text is always text: never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

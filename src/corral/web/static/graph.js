// The dependency graph: each agent a box coloured by its instances' states, in columns by
// how deep it sits in the dependencies (those it needs to its left), an arrow from each
// dependency to its dependant labelled with the condition awaited. Plain SVG, laid out here.

import { tone } from "./fleet.js";

const NS = "http://www.w3.org/2000/svg";
const W = 190, H = 58, GAP_X = 90, GAP_Y = 22, PAD = 20;
const ORDER = { bad: 3, busy: 2, down: 1, ok: 0 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Columns of agents: depth 0 needs nothing (of this fleet), depth n needs one of n - 1. */
export function layers(agents, needs) {
  const depth = new Map();
  const visit = (agent, path) => {
    if (depth.has(agent)) return depth.get(agent);
    if (path.has(agent)) return 0; // a cycle (the manifest refuses one): do not loop
    path.add(agent);
    const below = needs(agent).filter((d) => agents.includes(d)).map((d) => visit(d, path));
    path.delete(agent);
    const d = below.length ? Math.max(...below) + 1 : 0;
    depth.set(agent, d);
    return d;
  };
  for (const agent of agents) visit(agent, new Set());
  const columns = [];
  for (const agent of agents) (columns[depth.get(agent)] ||= []).push(agent);
  return columns.map((column) => column.sort());
}

/** An agent's tone from its instances' (the worst one's), and its counts by state. */
export function summary(fleet, agent) {
  const rows = fleet.instancesOf(agent).map((name) => fleet.rows.get(name));
  const counts = {};
  for (const row of rows) counts[row.state] = (counts[row.state] || 0) + 1;
  let worst = rows.length ? "ok" : "down";
  for (const row of rows) if (ORDER[tone(row)] > ORDER[worst]) worst = tone(row);
  const unhealthy = rows.filter((r) => r.health === "unhealthy").length;
  const text = Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(" · ") || "no instances";
  return { tone: worst, text: unhealthy ? `${text} · ${unhealthy} unhealthy` : text, rows };
}

export class Graph {
  constructor(fleet, root) {
    this.fleet = fleet;
    this.holder = document.createElement("div");
    this.holder.className = "graph";
    const legend = document.createElement("p");
    legend.className = "legend";
    for (const [t, text] of [["ok", "running (or done)"], ["busy", "on its way"],
      ["bad", "failing, backing off or unhealthy"], ["down", "stopped"]]) {
      const key = document.createElement("span");
      key.dataset.tone = t;
      key.textContent = text;
      legend.append(key);
    }
    root.append(this.holder, legend);
    this.due = false;
    fleet.addEventListener("change", () => this.later());
  }

  later() {
    if (this.due) return;
    this.due = true;
    requestAnimationFrame(() => { this.due = false; this.render(); });
  }

  render() {
    const fleet = this.fleet;
    const agents = fleet.agentNames();
    const needs = (a) => Object.keys(fleet.agents[a]?.depends_on || {});
    const columns = layers(agents, needs);
    const at = new Map();
    columns.forEach((column, x) => column.forEach((agent, y) => {
      at.set(agent, { x: PAD + x * (W + GAP_X), y: PAD + y * (H + GAP_Y) });
    }));
    const tall = Math.max(1, ...columns.map((c) => c.length));
    const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
    const height = PAD * 2 + tall * H + (tall - 1) * GAP_Y;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
      role: "img", "aria-label": "the agents' dependencies", id: "graph" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
    defs.append(marker);
    root.append(defs);
    for (const agent of agents) {
      for (const [dep, condition] of Object.entries(fleet.agents[agent]?.depends_on || {})) {
        const from = at.get(dep), to = at.get(agent);
        if (!from || !to) continue;
        const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
        const bend = (x2 - x1) / 2;
        const edge = svg("g", { class: "edge", "data-from": dep, "data-to": agent });
        edge.append(svg("path", { d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
          "marker-end": "url(#arrow)" }));
        edge.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" },
          condition));
        root.append(edge);
      }
    }
    for (const agent of agents) {
      const { x, y } = at.get(agent);
      const { tone: t, text, rows } = summary(fleet, agent);
      const node = svg("g", { class: "node", "data-agent": agent, "data-tone": t,
        transform: `translate(${x} ${y})`, tabindex: 0 });
      node.append(svg("rect", { width: W, height: H, rx: 8 }));
      node.append(svg("text", { x: 12, y: 23, class: "title" }, agent));
      node.append(svg("text", { x: 12, y: 43, class: "states" }, text));
      const open = () => { if (rows.length) location.hash = `#instance/${encodeURIComponent(rows[0].name)}`; };
      node.addEventListener("click", open);
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      root.append(node);
    }
    this.holder.replaceChildren(root);
  }
}

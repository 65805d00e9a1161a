// The dashboard: the session first (the link's one-time code, traded once), then the fleet
// live: its status, then the daemon's event stream (state changes and kept events), and a
// usage sample each two seconds; the views draw from that one model.

import { call, follow, hasSession, query, redeem } from "./api.js";
import { reportTo } from "./control.js";
import { Fleet } from "./fleet.js";
import { Graph } from "./graph.js";
import { Instance } from "./instance.js";
import { Logs } from "./logs.js";
import { Table } from "./table.js";

const USAGE_EVERY = 2000;
const fleet = new Fleet();
window.corral = { fleet, timings: fleet.timings }; // for the browser tests and the bench

const notice = document.getElementById("notice");
const link = document.getElementById("link");

function say(text, problem = false) {
  notice.textContent = text;
  notice.hidden = !text;
  notice.dataset.problem = problem ? "yes" : "no";
}
reportTo(say, () => refresh().catch(() => {}));

const STATUS_EVERY = 10000; // instances removed elsewhere (rm, scale from the CLI) go too

async function refresh() {
  const asked = fleet.events;
  const status = await call("GET", "/v1/status");
  fleet.replace(status, asked);
  return status;
}

const views = new Map(); // name -> { section, show(arg) }

export function register(name, show) {
  views.set(name, { section: document.getElementById(`view-${name}`), show });
}

function route() {
  const [name, ...rest] = (location.hash.slice(1) || "fleet").split("/");
  const view = views.get(name) || views.get("fleet");
  for (const [key, v] of views) v.section.hidden = v !== view;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.dataset.view === name);
  }
  view.show(decodeURIComponent(rest.join("/")));
}

function connect() {
  let stop = null;
  const open = () => {
    link.textContent = "connecting…";
    link.dataset.live = "no";
    stop = follow("/v1/events" + query([["journal", "1"]]), {
      async opened() { // subscribed: no change can fall between this status and the stream
        try {
          await refresh();
          document.getElementById("project").textContent = fleet.project;
          document.title = `corral: ${fleet.project}`;
          link.textContent = "live";
          link.dataset.live = "yes";
        } catch (error) { lost(error); }
      },
      event(kind, data) {
        if (kind === "state") shown(data);
        else if (kind === "journal") fleet.remember([data]);
      },
      ended: lost,
    });
  };
  const lost = (error) => {
    if (stop) stop();
    link.textContent = "reconnecting…";
    link.dataset.live = "no";
    if (error && error.status === 401) { locked(error.message); return; }
    setTimeout(open, 1000);
  };
  open();
}

/** A state event applied, and when the frame that shows it was drawn (the timing log). */
function shown(row) {
  const received = Date.now();
  fleet.update(row);
  requestAnimationFrame(() => {
    fleet.timings.push({ instance: row.name, state: row.state, pid: row.pid,
      event_ms: row.timestamp * 1000, received_ms: received, shown_ms: Date.now() });
    if (fleet.timings.length > 10000) fleet.timings.shift();
  });
}

async function statusLater() {
  setTimeout(async () => {
    if (!document.hidden && link.dataset.live === "yes") {
      try { await refresh(); } catch { /* the stream says */ }
    }
    statusLater();
  }, STATUS_EVERY);
}

async function poll() {
  if (!document.hidden) {
    try { fleet.sample(await call("GET", "/v1/usage")); } catch { /* the stream says */ }
  }
  setTimeout(poll, USAGE_EVERY);
}

function locked(problem) {
  for (const v of views.values()) v.section.hidden = true;
  say(`${problem}. Run 'corral dashboard' and open the link it prints.`, true);
  link.textContent = "no session";
}

async function main() {
  addEventListener("hashchange", () => { // a new link in this tab: only its fragment changed
    if (new URLSearchParams(location.hash.slice(1)).has("code")) location.reload();
  });
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (code) {
    history.replaceState(null, "", location.pathname + "#fleet"); // the code leaves the URL
    try { await redeem(code); } catch (error) { locked(error.message); return; }
  }
  if (!hasSession()) { locked("This dashboard needs its link"); return; }
  register("fleet", () => {});
  new Table(fleet, document.getElementById("view-fleet"));
  register("graph", () => {});
  new Graph(fleet, document.getElementById("view-graph"));
  const instance = new Instance(fleet, document.getElementById("view-instance"));
  register("instance", (name) => instance.show(name));
  const logs = new Logs(fleet, document.getElementById("view-logs"));
  register("logs", () => logs.show());
  addEventListener("hashchange", route);
  route();
  connect();
  poll();
  statusLater();
}

main();

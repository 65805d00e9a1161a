// Log search and follow across agents: the stored records that match (level and above, the
// agents and instances chosen, a regular expression on the message, a time range), then with
// "follow" the new ones as they come. Both are the daemon's filters (/v1/logs, /v1/events).

import { call, follow, query } from "./api.js";
import { el } from "./fleet.js";

const LEVELS = ["debug", "info", "warn", "error", "fatal"];
const SHOWN = 2000; // lines on the page; the oldest go first
const TAIL = 500; // stored records asked for, per agent

export class Logs {
  constructor(fleet, root) {
    this.fleet = fleet;
    this.stop = null;
    this.ran = false;
    const field = (name, attrs) => el("input", { name, id: `logs-${name}`, ...attrs });
    this.grep = field("grep", { type: "search", placeholder: "regular expression", size: 28 });
    this.level = el("select", { name: "level", id: "logs-level" },
      el("option", { value: "" }, "any level"), LEVELS.map((l) => el("option", { value: l }, `${l} and above`)));
    this.agent = el("select", { name: "agent", id: "logs-agent" });
    this.instance = el("select", { name: "instance", id: "logs-instance" });
    this.since = field("since", { placeholder: "since: 10m, ISO time", size: 16 });
    this.until = field("until", { placeholder: "until", size: 16 });
    this.follow = field("follow", { type: "checkbox", checked: true });
    this.status = el("span", { class: "logs-status", id: "logs-status" });
    this.body = el("tbody");
    const form = el("form", { class: "filters", id: "logs-form" },
      this.grep, this.level, this.agent, this.instance, this.since, this.until,
      el("label", {}, this.follow, " follow"),
      el("button", { type: "submit", id: "logs-search" }, "search"), this.status);
    form.addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
    this.agent.addEventListener("change", () => this.choices());
    root.append(form, el("div", { class: "logs-scroll" },
      el("table", { class: "logs", id: "logs-table" }, this.body)));
    fleet.addEventListener("change", (e) => { if (e.detail.names === null) this.choices(); });
  }

  /** The agent and instance menus, from the fleet (the choices made are kept). */
  choices() {
    const keep = (select, values, all) => {
      const chosen = select.value;
      const now = ["", ...values];
      const had = [...select.options].map((o) => o.value);
      if (JSON.stringify(had) === JSON.stringify(now)) return;
      select.replaceChildren(...now.map((v) => el("option", { value: v }, v || all)));
      select.value = now.includes(chosen) ? chosen : "";
    };
    keep(this.agent, this.fleet.agentNames(), "all agents");
    const agent = this.agent.value;
    keep(this.instance, agent ? this.fleet.instancesOf(agent) : this.fleet.names(), "all instances");
  }

  show() {
    this.choices();
    if (!this.ran) this.run();
  }

  filters() {
    const pairs = [];
    if (this.instance.value) pairs.push(["instance", this.instance.value]);
    else if (this.agent.value) pairs.push(["agent", this.agent.value]);
    pairs.push(["grep", this.grep.value], ["level", this.level.value]);
    return pairs;
  }

  async run() {
    this.ran = true;
    if (this.stop) { this.stop(); this.stop = null; }
    this.body.replaceChildren();
    const stored = [...this.filters(), ["since", this.since.value.trim()],
      ["until", this.until.value.trim()], ["tail", String(TAIL)]];
    const live = this.follow.checked && !this.until.value.trim();
    let last = "";
    let early = []; // records the stream gave before the stored ones came
    let loaded = false;
    const search = async () => {
      try {
        const records = await call("GET", "/v1/logs" + query(stored));
        records.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
        this.add(records);
        last = records.length ? records[records.length - 1].timestamp : "";
        loaded = true;
        this.add(early.filter((r) => r.timestamp > last));
        early = [];
        this.say(`${records.length} stored record${records.length === 1 ? "" : "s"}` +
          (live ? ", following" : ""));
      } catch (error) {
        this.say(error.message, true);
      }
    };
    if (!live) { await search(); return; }
    this.stop = follow("/v1/events" + query([["logs", "1"], ...this.filters()]), {
      opened: search, // subscribed first: no record falls between the two
      event: (kind, record) => {
        if (kind !== "log") return;
        if (!loaded) early.push(record);
        else this.add([record]);
      },
      ended: (error) => this.say(`follow stopped${error ? `: ${error.message}` : ""}`, true),
    });
  }

  add(records) {
    if (!records.length) return;
    const scroller = this.body.closest(".logs-scroll");
    const atEnd = !scroller || scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
    for (const r of records) {
      this.body.append(el("tr", { "data-level": r.level, "data-instance": r.instance },
        el("td", { class: "time" }, (r.timestamp || "").replace("T", " ").replace("Z", "")),
        el("td", { class: "instance" }, r.instance),
        el("td", { class: "level" }, r.level),
        el("td", { class: "message" }, r.message)));
    }
    while (this.body.childElementCount > SHOWN) this.body.firstElementChild.remove();
    if (scroller && atEnd) scroller.scrollTop = scroller.scrollHeight;
  }

  say(text, problem = false) {
    this.status.textContent = text;
    this.status.dataset.problem = problem ? "yes" : "no";
  }
}

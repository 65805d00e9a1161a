// The buttons: the same routes `corral start|stop|restart|scale` send.

import { call } from "./api.js";
import { el } from "./fleet.js";

let report = () => {};
let acted = () => {};

/** Where the outcome of a click is said (a problem stays until the next click), and what
 * runs after one (the table asks for the whole status: a scale removes instances, and no
 * state event says so). */
export function reportTo(say, after) { report = say; acted = after; }

export async function act(verb, names) {
  try {
    const reply = await call("POST", `/v1/${verb}`, { names });
    const done = reply.started || reply.stopped || reply.restarted || [];
    report(`${verb}: ${done.length ? done.join(", ") : "nothing to do"}`);
    acted();
  } catch (error) {
    report(`${verb} ${names.join(", ")}: ${error.message}`, true);
  }
}

export async function scale(agent, replicas) {
  try {
    await call("POST", "/v1/scale", { agent, replicas });
    report(`scale: ${agent} to ${replicas}`);
    acted();
  } catch (error) {
    report(`scale ${agent}: ${error.message}`, true);
  }
}

/** Start, stop and restart buttons for these names (an agent, or one instance). */
export function buttons(names, label) {
  return el("span", { class: "buttons" },
    ["start", "stop", "restart"].map((verb) => el("button", {
      type: "button", class: `act act-${verb}`, "data-verb": verb, title: `${verb} ${label}`,
      onclick: () => act(verb, names),
    }, verb)));
}

/** A replicas field and its button. */
export function scaler(agent, replicas) {
  const field = el("input", {
    type: "number", min: 0, max: 10000, value: replicas, class: "replicas",
    "aria-label": `replicas of ${agent}`,
  });
  const go = () => {
    const n = Number(field.value);
    if (Number.isInteger(n) && n >= 0) scale(agent, n);
    else report(`scale ${agent}: replicas must be a whole number, 0 or more`, true);
  };
  field.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  return el("span", { class: "scaler" }, field,
    el("button", { type: "button", class: "act act-scale", onclick: go }, "scale"));
}

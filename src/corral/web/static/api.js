// The fleet protocol over HTTP, as the dashboard's door serves it: one bearer (the session
// the one-time link opened), JSON replies, and server-sent events read from a fetch (an
// EventSource cannot send the bearer).

const KEY = "corral-session";

export class ApiError extends Error {
  constructor(status, problem, fix) {
    super(fix ? `${problem}: ${fix}` : problem);
    this.status = status;
  }
}

export const hasSession = () => sessionStorage.getItem(KEY) !== null;

/** Trade the link's one-time code for a session, kept in this tab only. */
export async function redeem(code) {
  const reply = await fetch("/session", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ code }),
  });
  const body = await reply.json();
  if (!reply.ok) throw new ApiError(reply.status, body.error, body.fix);
  sessionStorage.setItem(KEY, body.session);
}

function headers(json) {
  const out = { authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
  if (json) out["content-type"] = "application/json";
  return out;
}

async function refused(reply) {
  if (reply.status === 401) sessionStorage.removeItem(KEY);
  let body = {};
  try { body = await reply.json(); } catch { /* not JSON */ }
  return new ApiError(reply.status, body.error || `the daemon answered ${reply.status}`,
    body.fix || "");
}

/** One request; the JSON (or text) reply, or an ApiError with the daemon's problem and fix. */
export async function call(method, path, body) {
  const reply = await fetch(path, {
    method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!reply.ok) throw await refused(reply);
  const type = reply.headers.get("content-type") || "";
  if (type.includes("ndjson")) {
    const text = await reply.text();
    return text.split("\n").filter((line) => line).map((line) => JSON.parse(line));
  }
  return type.includes("json") ? reply.json() : reply.text();
}

/** A query string of [name, value] pairs (a value left out when empty). */
export function query(pairs) {
  const kept = pairs.filter(([, value]) => value !== undefined && value !== null && value !== "");
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}

/**
 * Follow a stream of server-sent events: `opened()` once subscribed (the daemon's first
 * comment), `event(kind, data)` for each, `ended(error)` when it stops by itself. Returns
 * what stops it.
 */
export function follow(path, { opened = () => {}, event, ended = () => {} }) {
  const abort = new AbortController();
  (async () => {
    let problem = null;
    try {
      const reply = await fetch(path, { headers: headers(false), signal: abort.signal });
      if (!reply.ok) throw await refused(reply);
      const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (first) { first = false; opened(); }
          let kind = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data.push(line.slice(6));
          }
          if (data.length) event(kind, JSON.parse(data.join("\n")));
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return;
      problem = error;
    }
    if (!abort.signal.aborted) ended(problem);
  })();
  return () => abort.abort();
}

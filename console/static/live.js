"use strict";
// The live page: calls in progress from /api/live (server-sent events), and the search.

const Live = {
  rows: new Map(), // call id -> {row, call}
  skew: 0, // server clock - browser clock, seconds

  start() {
    Console.me();
    Live.connect();
    setInterval(Live.tick, 500);
    document.getElementById("search").addEventListener("submit", (e) => {
      e.preventDefault();
      Live.search();
    });
    Live.search();
  },

  connect() {
    const status = document.getElementById("live-status");
    const source = new EventSource("/api/live");
    source.addEventListener("open", () => { status.textContent = "live"; status.className = "status ok"; });
    source.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = "status bad"; });
    source.addEventListener("snapshot", (e) => {
      const data = JSON.parse(e.data);
      Live.clock(data.now);
      for (const { row } of Live.rows.values()) row.remove();
      Live.rows.clear();
      for (const call of data.calls) Live.upsert(call);
      Live.count();
    });
    source.addEventListener("update", (e) => {
      const data = JSON.parse(e.data);
      Live.clock(data.now);
      for (const call of data.calls) Live.upsert(call);
      for (const id of data.gone) {
        const entry = Live.rows.get(id);
        if (entry) entry.row.remove();
        Live.rows.delete(id);
      }
      Live.count();
    });
  },

  clock(serverNow) {
    Live.skew = serverNow - Date.now() / 1000;
  },

  upsert(call) {
    let entry = Live.rows.get(call.call_id);
    if (!entry) {
      const row = Console.el("tr", { "data-call-id": call.call_id });
      document.querySelector("#live tbody").append(row);
      entry = { row, call };
      Live.rows.set(call.call_id, entry);
    }
    entry.call = call;
    const row = entry.row;
    row.className = call.ended_ts ? "ended" : "";
    row.replaceChildren(
      Console.el("td", {}, Console.el("a", { href: `/calls/${call.call_id}`, class: "mono", text: Console.short(call.call_id) })),
      Console.el("td", { class: "mono caller", text: call.caller || "unknown" }),
      Console.el("td", {}, Console.el("span", { class: "state", text: call.state })),
      Console.el("td", { class: "mono elapsed" }),
      Console.el("td", { class: "said", text: call.last_transcript ? call.last_transcript.text : "" }),
      Console.el("td", { class: "decided", text: Console.decision(call.last_decision) }),
      Console.el("td", { class: call.last_bot && call.last_bot.edge ? "bot edge" : "bot", text: call.last_bot ? call.last_bot.text : "" }),
    );
    Live.elapsed(entry);
  },

  elapsed(entry) {
    const cell = entry.row.querySelector(".elapsed");
    const call = entry.call;
    if (!call.started_ts) { cell.textContent = "…"; return; }
    const end = call.ended_ts || Date.now() / 1000 + Live.skew;
    cell.textContent = Console.seconds(end - call.started_ts) + (call.ended_ts ? ` ended (${call.end_outcome || "?"})` : "");
  },

  tick() {
    for (const entry of Live.rows.values()) Live.elapsed(entry);
  },

  count() {
    const live = [...Live.rows.values()].filter((e) => !e.call.ended_ts).length;
    document.getElementById("live-count").textContent = String(live);
    document.getElementById("live-empty").hidden = Live.rows.size > 0;
  },

  async search() {
    const form = document.getElementById("search");
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) if (value) params.set(key, value);
    const status = document.getElementById("search-status");
    status.textContent = "searching…";
    let data;
    try {
      data = await Console.json(`/api/calls?${params}`);
    } catch (e) {
      status.textContent = e.message;
      return;
    }
    status.textContent = `${data.calls.length} call(s)${data.calls.length >= data.limit ? " (the newest)" : ""}`;
    const body = document.querySelector("#results tbody");
    body.replaceChildren(...data.calls.map(Live.result));
  },

  result(c) {
    const num = (x, digits = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
    return Console.el(
      "tr",
      { "data-call-id": c.call_id },
      Console.el("td", { class: "mono", text: Console.when(c.started_ts) }),
      Console.el("td", {}, Console.el("a", { href: `/calls/${c.call_id}`, class: "mono", text: Console.short(c.call_id) })),
      Console.el("td", { class: "mono caller", text: c.caller || c.phone || "unknown" }),
      Console.el("td", { class: "mono", text: Console.seconds(c.duration_s) }),
      Console.el("td", { text: c.end_outcome || (c.ended_ts ? "?" : "in progress") }),
      Console.el("td", { text: c.outcome || "–" }),
      Console.el("td", { class: "mono ticket", text: c.ticket || "" }),
      Console.el("td", { class: "n", text: num(c.turns) }),
      Console.el("td", { class: "n", text: num(c.dead_air_s, 1) + " s" }),
      Console.el("td", { class: "n", text: num(c.max_wait_s, 1) + " s" }),
      Console.el("td", { class: "n", text: num(c.talk_overs) }),
      Console.el("td", { class: "n", text: num(c.repeat_prompts) }),
      Console.el("td", { class: "n", text: num(c.caller_repeats) }),
      Console.el("td", { class: "n", text: num(c.no_input_prompts) }),
      Console.el("td", { class: "n", text: num(c.hold_prompts) }),
      Console.el("td", { class: "n", text: num(c.provider_errors) }),
      Console.el("td", { class: "n", text: num(c.underruns) }),
      Console.el("td", { text: c.archived ? "✓" : "" }),
    );
  },
};

document.addEventListener("DOMContentLoaded", Live.start);

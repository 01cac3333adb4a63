"use strict";
// One call: facts, figures, both sides' audio on one timeline with what was said and
// decided, the latency of each turn, and the audio playing with the timeline following.

const SVG = "http://www.w3.org/2000/svg";
const GUTTER = 78; // px for the lane names
const LANES = {
  axis: [0, 18],
  states: [22, 20],
  callerWave: [48, 56],
  callerText: [106, 20],
  botWave: [134, 56],
  botText: [192, 20],
  marks: [218, 20],
};
const HEIGHT = 242;
const STATE_COLOURS = ["#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#e0e7ff", "#ffedd5", "#f3e8ff", "#ccfbf1"];

const Call = {
  id: location.pathname.split("/").pop(),
  model: null,
  peaks: null,
  pps: 20, // px per second
  items: [], // transcript <li>s with their [start, end)

  async start() {
    document.getElementById("call-title").textContent = Call.id;
    const me = await Console.me();
    Call.exportButton(me);
    const player = document.getElementById("player");
    player.addEventListener("timeupdate", Call.follow);
    player.addEventListener("play", () => requestAnimationFrame(Call.animate));
    document.getElementById("timeline").addEventListener("click", Call.seekFromTimeline);
    let model;
    try {
      model = await Console.json(`/api/calls/${Call.id}`);
    } catch (e) {
      document.getElementById("facts").replaceChildren(Console.el("dd", { class: "error", text: e.message }));
      return;
    }
    Call.show(model);
    Call.loadAudio();
    if (model.live) Call.followLive();
  },

  exportButton(me) {
    const button = document.getElementById("export");
    if (me.numbers) {
      button.href = `/api/calls/${Call.id}/export`;
      button.setAttribute("download", `${Call.id}.jsonl.gz`);
    } else {
      button.removeAttribute("href");
      button.classList.add("disabled");
      button.title = "The export file holds the caller's number: supervisors only";
    }
  },

  followLive() {
    const source = new EventSource(`/api/calls/${Call.id}/live`);
    source.addEventListener("model", (e) => Call.show(JSON.parse(e.data)));
    source.addEventListener("ended", () => {
      source.close();
      Call.loadAudio();
    });
  },

  show(model) {
    Call.model = model;
    document.body.classList.toggle("live", model.live);
    Call.facts(model);
    Call.figures(model.figures);
    Call.transcript(model);
    Call.latency(model);
    Call.draw();
  },

  facts(m) {
    const facts = [
      ["Status", m.live ? "in progress" : "ended"],
      ["Started (UTC)", Console.when(m.started_ts)],
      ["Duration", Console.seconds(m.duration_s)],
      ["Caller", m.caller || "unknown"],
      ["Number given", m.phone || "–"],
      ["Outcome", m.end_outcome || "–"],
      ["Dialog outcome", m.outcome || "–"],
      ["Ticket", m.ticket || "–"],
      ["Final state", m.final_state || "–"],
      ["Hung up by", m.hung_up_by || "–"],
      ["Category", m.category || "–"],
      ["Events from", m.source + (m.archived ? " · MP3 archived" : "")],
    ];
    document.getElementById("facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [Console.el("dt", { text: k }), Console.el("dd", { text: v, "data-fact": k })]),
    );
  },

  figures(f) {
    const names = {
      turns: "turns", dead_air_s: "dead air (s)", max_wait_s: "longest wait (s)",
      talk_overs: "talk-overs", repeat_prompts: "repeat prompts", caller_repeats: "caller repeats",
      no_input_prompts: "no-input prompts", hold_prompts: "hold phrases",
      provider_errors: "provider errors", underruns: "under-runs",
    };
    document.getElementById("figures").replaceChildren(
      ...Object.entries(names).flatMap(([k, label]) => {
        const v = f[k];
        const text = v === null || v === undefined ? "–" : (k.endsWith("_s") ? Number(v).toFixed(2) : String(v));
        return [Console.el("dt", { text: label }), Console.el("dd", { text, "data-figure": k })];
      }),
    );
  },

  // --- who said what ------------------------------------------------------------------------

  transcript(m) {
    const rows = [];
    for (const line of m.lines) {
      const who = line.who === "caller" ? "Caller" : line.who === "edge" ? "Bot (edge)" : "Bot";
      const cut = line.interrupted ? " (interrupted)" : "";
      rows.push({ t: line.start ?? 0, end: line.end, kind: line.who, text: `${who}: ${line.text}${cut}` });
    }
    for (const d of m.decisions) {
      if (d.state_from === d.state_to && !d.intent) continue;
      rows.push({ t: d.t, kind: "state", text: `${d.state_from} → ${d.state_to}` + (d.intent ? `  [${d.intent}]` : "") + ` (${d.trigger})` });
    }
    for (const mark of m.marks) rows.push({ t: mark.t, kind: mark.kind, text: mark.text });
    rows.sort((a, b) => a.t - b.t);
    Call.items = [];
    const list = document.getElementById("transcript");
    list.replaceChildren(...rows.map((r) => {
      const li = Console.el("li", { class: `line ${r.kind}`, "data-t": r.t },
        Console.el("span", { class: "mono t", text: Console.seconds(r.t) + `.${String(Math.floor((r.t % 1) * 10))}` }),
        Console.el("span", { class: "text", text: r.text }));
      li.addEventListener("click", () => Call.seek(r.t));
      if (r.end !== undefined && r.end !== null) Call.items.push({ li, start: r.t, end: r.end });
      return li;
    }));
  },

  // --- latency ------------------------------------------------------------------------------

  latency(m) {
    const turns = m.decisions.filter((d) => d.latency);
    const box = document.getElementById("latency");
    if (!turns.length) {
      box.replaceChildren(Console.el("p", { class: "empty", text: "No turn with a latency breakdown yet." }));
      return;
    }
    const parts = (lat) => {
      const stt = lat.transcript_ms ?? 0;
      const nlu = lat.nlu_ms ?? 0;
      const say = lat.say_ms ?? stt + nlu;
      const first = lat.first_frame_ms;
      return [
        ["stt", "end of speech → transcript", stt],
        ["nlu", "transcript → decision (NLU)", nlu],
        ["reply", "decision → say", Math.max(0, say - stt - nlu)],
        ["audio", "say → first bot frame", first === null || first === undefined ? null : Math.max(0, first - say)],
      ];
    };
    const total = (lat) => parts(lat).reduce((s, [, , v]) => s + (v ?? 0), 0);
    const widest = Math.max(1, ...turns.map((d) => total(d.latency)));
    box.replaceChildren(...turns.map((d) => {
      const bar = Console.el("div", { class: "latency-bar", "data-turn": d.turn });
      for (const [kind, label, value] of parts(d.latency)) {
        if (value === null) continue;
        const seg = Console.el("span", { class: `seg ${kind}`, title: `${label}: ${Math.round(value)} ms` });
        seg.style.width = `${(100 * value) / widest}%`;
        bar.append(seg);
      }
      const said = d.text ? `“${d.text}”` : d.trigger;
      return Console.el("div", { class: "turn", "data-seq": d.seq },
        Console.el("span", { class: "turn-label", text: `turn ${d.turn} · ${said} → ${d.state_to}` }),
        bar,
        Console.el("span", { class: "mono total", text: Console.ms(d.latency.first_frame_ms ?? total(d.latency)) }));
    }), Console.el("p", { class: "legend" },
      Console.el("span", { class: "key stt", text: "STT" }), " ",
      Console.el("span", { class: "key nlu", text: "NLU" }), " ",
      Console.el("span", { class: "key reply", text: "decision → say" }), " ",
      Console.el("span", { class: "key audio", text: "TTS + edge → first frame" })));
  },

  // --- audio and the timeline ---------------------------------------------------------------

  async loadAudio() {
    const status = document.getElementById("audio-status");
    const player = document.getElementById("player");
    status.textContent = "rendering audio…";
    try {
      Call.peaks = await Console.json(`/api/calls/${Call.id}/waveform`);
    } catch (e) {
      status.textContent = "no audio (" + e.message.split(":")[0] + ")";
      Call.peaks = null;
      Call.draw();
      return;
    }
    player.src = `/api/calls/${Call.id}/audio?v=${Date.now()}`;
    status.textContent = Call.peaks.source === "mp3" ? "archived MP3" : "stream audio (not archived yet)";
    if (Call.peaks.notes.length) status.textContent += " · " + Call.peaks.notes.join("; ");
    Call.draw();
  },

  duration() {
    const m = Call.model;
    return Math.max(1, m ? m.duration_s : 0, Call.peaks ? Call.peaks.duration_s : 0);
  },

  draw() {
    if (!Call.model) return;
    const m = Call.model;
    const box = document.getElementById("timeline-box");
    const svg = document.getElementById("timeline");
    const duration = Call.duration();
    Call.pps = Math.max(12, Math.min(80, (box.clientWidth - GUTTER - 60) / duration));
    const width = GUTTER + duration * Call.pps + 60; // room for the last label
    svg.setAttribute("width", width);
    svg.setAttribute("height", HEIGHT);
    svg.replaceChildren();
    const x = (t) => GUTTER + t * Call.pps;
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    for (const [name, [y, h]] of Object.entries({ "states": LANES.states, "caller": LANES.callerWave, "bot": LANES.botWave, "events": LANES.marks })) {
      add("text", { x: 4, y: y + h / 2 + 4, class: "lane-name" }, name);
    }
    // time axis
    const step = duration > 300 ? 30 : duration > 120 ? 10 : duration > 30 ? 5 : 1;
    for (let t = 0; t <= duration; t += step) {
      add("line", { x1: x(t), x2: x(t), y1: 12, y2: HEIGHT, class: "tick" });
      add("text", { x: x(t) + 2, y: 10, class: "tick-label" }, Console.seconds(t));
    }
    // dialog states as bands
    const changes = m.decisions.filter((d) => d.state_from !== d.state_to);
    const bands = [{ t: 0, state: changes.length ? changes[0].state_from : m.final_state || "WELCOME" }];
    for (const d of changes) bands.push({ t: d.t, state: d.state_to });
    const names = [...new Set(bands.map((b) => b.state))];
    bands.forEach((b, i) => {
      const end = i + 1 < bands.length ? bands[i + 1].t : duration;
      const [y, h] = LANES.states;
      add("rect", { x: x(b.t), y, width: Math.max(1, (end - b.t) * Call.pps), height: h, fill: STATE_COLOURS[names.indexOf(b.state) % STATE_COLOURS.length], class: "state-band" });
      add("text", { x: x(b.t) + 3, y: y + 14, class: "band-label" }, Call.fit(b.state, (end - b.t) * Call.pps));
    });
    // waveforms
    if (Call.peaks) {
      Call.wave(add, Call.peaks.caller, Call.peaks.per_s, LANES.callerWave, "wave caller");
      Call.wave(add, Call.peaks.bot, Call.peaks.per_s, LANES.botWave, "wave bot");
    }
    // who said what, on its side
    for (const line of m.lines) {
      if (line.start === null || line.start === undefined) continue;
      const [y, h] = line.who === "caller" ? LANES.callerText : LANES.botText;
      const end = line.end ?? line.start + 1;
      const w = Math.max(2, (end - line.start) * Call.pps);
      const g = add("g", { class: `said ${line.who}${line.interrupted ? " interrupted" : ""}` });
      const rect = document.createElementNS(SVG, "rect");
      for (const [k, v] of Object.entries({ x: x(line.start), y, width: w, height: h, rx: 3 })) rect.setAttribute(k, v);
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", x(line.start) + 3);
      text.setAttribute("y", y + 14);
      text.textContent = Call.fit(line.text, w);
      const title = document.createElementNS(SVG, "title");
      title.textContent = line.text;
      g.append(rect, text, title);
    }
    // single moments
    for (const mark of m.marks) {
      const [y, h] = LANES.marks;
      add("line", { x1: x(mark.t), x2: x(mark.t), y1: LANES.states[0], y2: y + h, class: `mark ${mark.kind}` });
      const label = add("text", { x: x(mark.t) + 2, y: y + 14, class: `mark-label ${mark.kind}` }, mark.kind === "dtmf" ? mark.text.replace("DTMF ", "#") : mark.kind);
      const title = document.createElementNS(SVG, "title");
      title.textContent = mark.text;
      label.append(title);
    }
    Call.playhead = add("line", { x1: GUTTER, x2: GUTTER, y1: 12, y2: HEIGHT, class: "playhead" });
    Call.follow();
  },

  wave(add, peaks, perS, [y, h], cls) {
    const mid = y + h / 2;
    const perPx = perS / Call.pps;
    let d = "";
    for (let px = 0; px * perPx < peaks.length; px += 1) {
      const from = Math.floor(px * perPx);
      const to = Math.max(from + 1, Math.floor((px + 1) * perPx));
      let peak = 0;
      for (let i = from; i < to && i < peaks.length; i += 1) peak = Math.max(peak, peaks[i]);
      if (peak < 2) continue;
      const half = (peak / 100) * (h / 2);
      d += `M${GUTTER + px + 0.5} ${(mid - half).toFixed(1)}V${(mid + half).toFixed(1)}`;
    }
    add("line", { x1: GUTTER, x2: GUTTER + (peaks.length / perS) * Call.pps, y1: mid, y2: mid, class: "wave-axis" });
    add("path", { d, class: cls });
  },

  fit(text, px) {
    const chars = Math.floor((px - 6) / 6.2);
    if (chars <= 1) return "";
    return text.length <= chars ? text : text.slice(0, chars - 1) + "…";
  },

  seek(t) {
    const player = document.getElementById("player");
    if (!player.src) return;
    player.currentTime = Math.max(0, t);
    Call.follow();
  },

  seekFromTimeline(e) {
    const svg = document.getElementById("timeline");
    const left = svg.getBoundingClientRect().left;
    const t = (e.clientX - left - GUTTER) / Call.pps;
    if (t >= 0) Call.seek(t);
  },

  animate() {
    Call.follow();
    if (!document.getElementById("player").paused) requestAnimationFrame(Call.animate);
  },

  follow() {
    const t = document.getElementById("player").currentTime || 0;
    if (Call.playhead) {
      const px = GUTTER + t * Call.pps;
      Call.playhead.setAttribute("x1", px);
      Call.playhead.setAttribute("x2", px);
      const box = document.getElementById("timeline-box");
      if (px < box.scrollLeft + GUTTER || px > box.scrollLeft + box.clientWidth - 40) {
        box.scrollLeft = Math.max(0, px - box.clientWidth / 3);
      }
    }
    for (const item of Call.items) item.li.classList.toggle("playing", t >= item.start && t < item.end);
  },
};

document.addEventListener("DOMContentLoaded", Call.start);
window.addEventListener("resize", () => Call.draw());

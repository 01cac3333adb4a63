"use strict";
// Shared by both pages: fetching, formatting, who is looking.

const Console = {
  async json(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) {
      const text = await response.text();
      throw new Error(`${response.status}: ${text.trim()}`);
    }
    return response.json();
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  seconds(s) {
    if (s === null || s === undefined) return "–";
    const whole = Math.max(0, Math.floor(s));
    const m = Math.floor(whole / 60);
    return `${m}:${String(whole % 60).padStart(2, "0")}`;
  },

  ms(x) {
    return x === null || x === undefined ? "–" : `${Math.round(x)} ms`;
  },

  when(ts) {
    if (!ts) return "–";
    return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);
  },

  short(callId) {
    return callId.slice(0, 8);
  },

  decision(d) {
    if (!d) return "";
    let text = d.state_from === d.state_to ? d.state_to : `${d.state_from} → ${d.state_to}`;
    if (d.intent) text += `  ${d.intent}`;
    const slots = Object.entries(d.slots || {}).map(([k, v]) => `${k}=${v}`);
    if (slots.length) text += `  ${slots.join(" ")}`;
    return text;
  },

  async me() {
    try {
      const me = await Console.json("/api/me");
      const node = document.getElementById("me");
      if (node) node.textContent = `${me.name} (${me.role}${me.numbers ? ", full numbers" : ", numbers masked"})`;
      return me;
    } catch (e) {
      return { name: "?", role: "agent", numbers: false };
    }
  },
};

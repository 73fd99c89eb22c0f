// The lab's connection to `lmlab serve`: JSON requests to the lab API and
// the OpenAI-compatible routes, the API key (asked for once, kept in this
// browser) and errors shown in one place.
const KEY = "lmlab-api-key";

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = localStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (box.hidden = true), 8000);
}

async function send(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch(path, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && attempt === 0) {
      const key = prompt("This server needs its API key:");
      if (key) { localStorage.setItem(KEY, key); continue; }
    }
    const data = await r.json().catch(() => ({ error: { message: `HTTP ${r.status}` } }));
    if (!r.ok) {
      const message = data.error ? data.error.message : `HTTP ${r.status}`;
      showError(message);
      throw new Error(message);
    }
    return data;
  }
}

export const get = (path) => send("GET", path);
export const post = (path, body) => send("POST", path, body);
export const del = (path) => send("DELETE", path);

// Streams a chat completion: onChunk(chunk, seconds since the request) per
// server-sent event; resolves when "[DONE]" arrives.
export async function streamChat(body, onChunk) {
  const t0 = performance.now();
  const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify({ ...body, stream: true }) });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    const message = data.error ? data.error.message : `HTTP ${r.status}`;
    showError(message);
    throw new Error(message);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) { showError(chunk.error.message); throw new Error(chunk.error.message); }
        onChunk(chunk, (performance.now() - t0) / 1000);
      }
    }
  }
}

// Small DOM helpers shared by the panels.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// A token's text with its edges visible: spaces ·, newlines ↵, tabs →.
export function visible(s) {
  return s.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "→");
}

export function bytesLabel(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function countLabel(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

// Background colour for a probability (white → accent blue).
export function probColor(p) {
  const a = Math.max(0.06, Math.min(1, p));
  return `rgba(47, 95, 208, ${(a * 0.55).toFixed(3)})`;
}

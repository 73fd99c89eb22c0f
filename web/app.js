// The lab's shell: one tab per panel (the URL's #hash picks it), the model's
// name and the engine's memory in the header.
import { get, bytesLabel } from "./api.js";
import chat from "./panels/chat.js";
import tokenizer from "./panels/tokenizer.js";
import embeddings from "./panels/embeddings.js";
import inside from "./panels/inside.js";
import attention from "./panels/attention.js";
import predictions from "./panels/predictions.js";
import surgery from "./panels/surgery.js";
import sweeps from "./panels/sweeps.js";
import training from "./panels/training.js";

const panels = [chat, tokenizer, embeddings, inside, attention, predictions, surgery, sweeps, training];
const mounted = new Map();
let info = null;

function show() {
  const id = location.hash.slice(1) || panels[0].id;
  const panel = panels.find((p) => p.id === id) || panels[0];
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.id === panel.id);
  const main = document.getElementById("panel");
  for (const el of main.children) el.hidden = true;
  if (!mounted.has(panel.id)) {
    const el = document.createElement("section");
    el.id = `panel-${panel.id}`;
    main.append(el);
    mounted.set(panel.id, el);
    panel.mount(el, info);
  }
  mounted.get(panel.id).hidden = false;
}

async function memory() {
  try {
    const s = await get("/lab/status");
    document.getElementById("memory").textContent =
      `memory ${bytesLabel(s.memory.active_bytes)} active, ${bytesLabel(s.memory.peak_bytes)} peak · ` +
      `${s.scheduler.active} running, ${s.scheduler.queued} waiting`;
  } catch (e) { /* shown by the next action */ }
}

async function start() {
  info = await get("/lab/info");
  document.getElementById("model-name").textContent =
    `${info.model.id} · ${info.model.model_type} · ${info.summary.size_label} parameters · ${info.device}`;
  const tabs = document.getElementById("tabs");
  for (const p of panels) {
    const a = document.createElement("a");
    a.href = `#${p.id}`;
    a.textContent = p.title;
    a.dataset.id = p.id;
    tabs.append(a);
  }
  window.addEventListener("hashchange", show);
  show();
  memory();
  setInterval(memory, 2000);
}

start();

// Sweeps: one edit at a schedule of strengths (the seed's shifts, a log grid
// or a bisection for the tipping point), run on the served model point by
// point as `lmlab sweep` does (restored bit-exactly after every point), with
// the seed's table and KL / top-1 agreement / perplexity charted against the
// strength. The page polls the sweep's job for the points finished so far.
import { h, get, post, del, showError } from "../api.js";

const COLORS = { healthy: "#9fd89a", degraded: "#ffe08a", collapsing: "#ffb26b", dead: "#f28b82" };
const SEED = "0, 1, 1000000, 1000001, 1000003, 1000004, 1000005, 1000010, 10000000, 100000000";

// printf's %g: `digits` significant digits, exponent form outside 1e-4 .. 10^digits.
function g(x, digits) {
  if (x === null || x === undefined) return "n/a";  // not finite: null in JSON
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const e = Math.floor(Math.log10(Math.abs(Number(x.toPrecision(digits)))));
  if (e < -4 || e >= digits) {
    const [m, ex] = x.toExponential(digits - 1).split("e");
    const mant = m.includes(".") ? m.replace(/\.?0+$/, "") : m;
    const n = Number(ex);
    return `${mant}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  const s = x.toFixed(Math.max(0, digits - 1 - e));
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

function table(points, words) {
  return h("table", { id: "sweep-table" },
    h("tr", {}, h("th", { class: "num" }, words ? "shift" : "value"), h("th", { class: "num" }, "% of original"), h("th", {}, "status"),
      h("th", { class: "num" }, "KL (nats/token)"), h("th", { class: "num" }, "top-1"), h("th", { class: "num" }, "perplexity"), h("th", {}, "response")),
    points.map((p) => h("tr", { dataset: { value: p.value, percent: p.percent, status: p.status, kl: p.kl, top1: p.top1 } },
      h("td", { class: "num mono" }, g(p.value, 12)), h("td", { class: "num" }, `${g(p.percent, 6)}%`),
      h("td", { style: `background:${COLORS[p.status]}` }, p.status), h("td", { class: "num" }, g(p.kl, 4)),
      h("td", { class: "num" }, p.top1 === null ? "n/a" : p.top1.toFixed(4)), h("td", { class: "num" }, p.ppl ? p.ppl.toFixed(3) : ""),
      h("td", { class: "mono" }, p.replies.map((r, i) => `${p.answers_ok[i] ? "✓" : "✗"} ${JSON.stringify(r)}`).join(" / ")))));
}

export default {
  id: "sweeps",
  title: "Sweeps",
  async mount(el) {
    const params = await get("/lab/params");
    const op = h("select", { id: "sweep-op" }, ["shift-words", "shift-fields", "noise", "flip-bits", "scale", "set", "zero", "requantize"].map((o) => h("option", {}, o)));
    const target = h("input", { type: "text", value: "lm_head", size: 36, list: "sweep-names", id: "sweep-target" });
    const names = h("datalist", { id: "sweep-names" }, params.params.map((p) => h("option", { value: p.name })));
    const kind = h("select", { id: "sweep-kind" }, h("option", { value: "values" }, "values"), h("option", { value: "log_grid" }, "log grid"), h("option", { value: "bisect" }, "bisection"));
    const values = h("input", { type: "text", value: SEED, size: 60, id: "sweep-values" });
    const lo = h("input", { type: "number", value: "1", step: "any", style: "width:8em", id: "sweep-lo" });
    const hi = h("input", { type: "number", value: "100000000", step: "any", style: "width:8em", id: "sweep-hi" });
    const points = h("input", { type: "number", value: "8", min: "2", max: "24", style: "width:4em", id: "sweep-points" });
    const until = h("input", { type: "text", value: "status>=degraded", size: 16, id: "sweep-until" });
    const prompts = h("input", { type: "text", value: "What is 2+2?", size: 30, id: "sweep-prompt" });
    const expect = h("input", { type: "text", value: "4", size: 6, id: "sweep-expect" });
    const text = h("textarea", { rows: 2, cols: 60, id: "sweep-text", placeholder: "evaluation text for KL, top-1 and perplexity (empty: the built-in passage)" });
    const healthy = h("input", { type: "number", value: "0.05", step: "any", style: "width:5em", id: "sweep-healthy" });
    const degraded = h("input", { type: "number", value: "0.5", step: "any", style: "width:5em", id: "sweep-degraded" });
    const collapsing = h("input", { type: "number", value: "3", step: "any", style: "width:5em", id: "sweep-collapsing" });
    const run = h("button", { id: "sweep-run" }, "Run sweep");
    const cancel = h("button", { id: "sweep-cancel", hidden: true }, "Cancel");
    let running = null;  // the id of the sweep this page started, while it runs
    const progress = h("div", { class: "stats", id: "sweep-progress" });
    const out = h("div", { id: "sweep-out" });
    let chart;

    function request() {
      const body = { op: op.value, target: target.value, prompts: [prompts.value], expect: [expect.value],
                     healthy_kl: Number(healthy.value), degraded_kl: Number(degraded.value), collapsing_kl: Number(collapsing.value) };
      if (text.value.trim()) body.text = text.value;
      if (kind.value === "values") body.values = values.value.split(",").map((v) => Number(v.trim()));
      else if (kind.value === "log_grid") body.log_grid = [Number(lo.value), Number(hi.value), Number(points.value)];
      else { body.bisect = [Number(lo.value), Number(hi.value)]; body.until = until.value; }
      return body;
    }

    function draw(job, logX) {
      const words = op.value === "shift-words";
      const pts = [...job.points].sort((a, b) => a.value - b.value);
      const canvas = h("canvas", { id: "sweep-chart", height: 120 });
      const report = job.report;
      out.replaceChildren(
        report ? h("div", { class: "card", id: "sweep-summary", dataset: { unchanged: report.served_model_unchanged } },
          `${report.target}${report.head_note ? ` — ${report.head_note}` : ""}. Unperturbed: perplexity ${report.baseline.ppl.toFixed(4)} over ${report.eval_tokens} tokens, ` +
          `replies ${JSON.stringify(report.baseline.replies)}. ` +
          (report.tipping_point ? `Tipping point (${until.value}): between ${g(report.tipping_point.last_before, 12)} and ${g(report.tipping_point.first_past, 12)}. ` : "") +
          `Served weights hash ${report.served_hash_before} before, ${report.served_hash_after} after` +
          (report.served_model_unchanged ? " — the served model is unchanged." : " — CHANGED.")) : "",
        table(job.points, words), h("div", { class: "chart" }, canvas));
      if (chart) chart.destroy();
      // Zero cannot sit on a log axis: the grid's points are all positive, a list may start at 0.
      const x = logX && pts.every((p) => p.value > 0) ? "logarithmic" : "linear";
      const line = (label, key, color, axis) => ({ label, data: pts.map((p) => ({ x: p.value, y: p[key] })), borderColor: color, backgroundColor: color, yAxisID: axis });
      const datasets = [line("KL (nats/token)", "kl", "#b3261e", "y"), line("top-1 agreement", "top1", "#2f5fd0", "y2")];
      if (pts.some((p) => p.ppl > 0)) datasets.push(line("perplexity", "ppl", "#6e6e73", "y3"));
      chart = new Chart(canvas, { type: "line", data: { datasets }, options: { animation: false, maintainAspectRatio: false,
        scales: { x: { type: x, title: { display: true, text: words ? "shift" : "value" } }, y: { position: "left", min: 0, title: { display: true, text: "KL" } },
                  y2: { position: "right", min: 0, max: 1, grid: { drawOnChartArea: false }, title: { display: true, text: "top-1" } },
                  y3: { position: "right", type: "logarithmic", grid: { drawOnChartArea: false }, title: { display: true, text: "perplexity" } } } } });
    }

    async function poll(id, logX) {
      let drawn = "";
      for (;;) {
        const job = await get(`/lab/sweep/${id}`);
        progress.textContent = `sweep ${id}: ${job.state}, ${job.done} of ${job.total || "?"} points`;
        const key = `${job.state}:${job.points.length}`;
        if (job.points.length && key !== drawn) { draw(job, logX); drawn = key; }
        if (job.state === "done" || job.state === "failed" || job.state === "cancelled") {
          progress.dataset.state = job.state;
          if (job.state === "failed") showError(job.error);
          return;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }

    run.addEventListener("click", async () => {
      run.disabled = true;
      delete progress.dataset.state;
      try {
        const job = await post("/lab/sweep", request());
        running = job.id;
        cancel.hidden = false;
        await poll(job.id, kind.value === "log_grid");
      } finally {
        running = null;
        cancel.hidden = true;
        run.disabled = false;
      }
    });
    // Stops the sweep before its next point; the points done so far stay charted.
    cancel.addEventListener("click", async () => {
      if (running !== null) await del(`/lab/sweep/${running}`);
    });
    const showKind = () => {
      values.hidden = kind.value !== "values";
      for (const e of [lo, hi]) e.hidden = kind.value === "values";
      points.hidden = kind.value !== "log_grid";
      until.hidden = kind.value !== "bisect";
    };
    kind.addEventListener("change", showKind);
    showKind();
    el.append(h("p", { class: "muted" }, "Each point edits the served model, measures it against its unperturbed self and restores the original bytes (hash-checked) " +
      "before the next; API requests wait while a sweep runs, so the lab takes at most 24 points per sweep (lmlab sweep has no limit)."),
      h("div", { class: "row" }, op, target, names, "schedule", kind, values, lo, hi, points, until),
      h("div", { class: "row" }, "prompt", prompts, "expect", expect, "healthy ≤", healthy, "degraded ≤", degraded, "collapsing ≤", collapsing),
      h("div", { class: "row" }, text, run, cancel), progress, out);
  },
};

// Training: the runs under `lmlab serve --runs DIR` (folders holding the
// train_log.csv that `lmlab lora --adapter-path DIR/NAME` writes beside its
// adapters) and a chosen run's train and validation loss, learning rate and
// tokens/s against the iteration, read again every few seconds so a run still
// training draws itself.
import { h, get } from "../api.js";

const REFRESH_MS = 3000;

export default {
  id: "training",
  title: "Training",
  async mount(el) {
    const list = await get("/lab/runs");
    if (!list.enabled) {
      el.append(h("div", { class: "card", id: "train-disabled" }, "No runs folder. Start the server with ",
        h("code", {}, "lmlab serve --runs runs"), " and train with ", h("code", {}, "lmlab lora --train --adapter-path runs/NAME …"),
        " in a terminal: every folder under runs/ holding a train_log.csv shows up here, its curves redrawn while it trains."));
      return;
    }
    const pick = h("select", { id: "train-run" });
    const stats = h("div", { class: "stats", id: "train-stats" });
    const lossCanvas = h("canvas", { id: "train-loss", height: 120 });
    const rateCanvas = h("canvas", { id: "train-rate", height: 90 });
    const table = h("div", { id: "train-table" });
    let loss, rate, shown = "";

    function fill(runs) {
      const current = pick.value;
      pick.replaceChildren(...runs.map((r) => h("option", { value: r.name }, `${r.name} (${r.last_iteration} iterations)`)));
      if (runs.some((r) => r.name === current)) pick.value = current;
      if (!runs.length) stats.textContent = `no run in ${list.dir} yet: lmlab lora --train --adapter-path ${list.dir}/NAME …`;
    }

    function chart(canvas, old, datasets, y) {
      if (old) old.destroy();
      return new Chart(canvas, { type: "line", data: { datasets }, options: { animation: false, maintainAspectRatio: false, spanGaps: true,
        scales: { x: { type: "linear", title: { display: true, text: "iteration" } }, ...y } } });
    }

    function draw(log) {
      const series = (key) => log.rows.filter((r) => r[key] !== null && r[key] > 0).map((r) => ({ x: r.iteration, y: r[key] }));
      const line = (label, key, color, axis) => ({ label, data: series(key), borderColor: color, backgroundColor: color, yAxisID: axis });
      loss = chart(lossCanvas, loss, [line("train loss", "train_loss", "#2f5fd0", "y"), line("validation loss", "val_loss", "#b3261e", "y")],
                   { y: { title: { display: true, text: "loss" } } });
      rate = chart(rateCanvas, rate, [line("learning rate", "learning_rate", "#6e6e73", "y"), line("tokens/s", "tokens_per_sec", "#1d7a46", "y2")],
                   { y: { beginAtZero: true, title: { display: true, text: "learning rate" } }, y2: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "tokens/s" } } });
      const last = log.rows[log.rows.length - 1];
      stats.textContent = last ? `${log.rows.length} rows, iteration ${last.iteration}; last write ${log.seconds_since_write.toFixed(0)} s ago` +
        (log.adapters ? "; adapters saved" : "") : "no rows yet";
      stats.dataset.rows = log.rows.length;
      table.replaceChildren(h("table", {}, h("tr", {}, ["iteration", "train loss", "val loss", "learning rate", "it/s", "tokens/s", "tokens", "peak GB"].map((t) => h("th", { class: "num" }, t))),
        log.rows.slice(-8).map((r) => h("tr", {}, [r.iteration, r.train_loss ?? "", r.val_loss ?? "", r.learning_rate, r.it_per_sec, r.tokens_per_sec, r.trained_tokens, r.peak_memory_gb]
          .map((v) => h("td", { class: "num" }, v))))));
    }

    async function refresh() {
      if (el.hidden) return;
      fill((await get("/lab/runs")).runs);
      if (!pick.value) return;
      const log = await get(`/lab/runs/log?run=${encodeURIComponent(pick.value)}`);
      const key = `${pick.value}:${JSON.stringify(log.rows[log.rows.length - 1] ?? null)}:${log.rows.length}`;
      if (key !== shown) { draw(log); shown = key; }
    }

    pick.addEventListener("change", () => { shown = ""; refresh(); });
    el.append(h("p", { class: "muted" }, `Runs under ${list.dir}, read again every ${REFRESH_MS / 1000} s.`),
      h("div", { class: "row" }, "run", pick, h("button", { class: "secondary", onclick: () => refresh() }, "Refresh")), stats,
      h("div", { class: "chart" }, lossCanvas), h("div", { class: "chart" }, rateCanvas), table);
    fill(list.runs);
    await refresh().catch(() => {});
    setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  },
};

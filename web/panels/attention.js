// Attention: the attention probabilities of every head of one layer for a
// prompt, captured from a real forward pass: one small heatmap per head
// (row = query token, column = key token, causal), the chosen head large with
// its token labels, and each head's mean entropy.
import { h, post, visible } from "../api.js";

function heatmap(map, cell) {
  const c = h("canvas", { class: "heat", width: map.cols * cell, height: map.rows * cell });
  const g = c.getContext("2d");
  for (let r = 0; r < map.rows; r++)
    for (let k = 0; k < map.cols; k++) {
      const p = map.probs[r * map.cols + k];
      const v = Math.round(255 * (1 - Math.sqrt(p)));
      g.fillStyle = k > r ? "#f4f4f4" : `rgb(${v},${v},255)`;
      g.fillRect(k * cell, r * cell, cell, cell);
    }
  return c;
}

export default {
  id: "attention",
  title: "Attention",
  mount(el, info) {
    const prompt = h("input", { type: "text", value: "The cat sat on the mat because it was tired.", size: 60, id: "att-prompt" });
    const layer = h("select", { id: "att-layer" }, Array.from({ length: info.summary.num_layers }, (_, i) => h("option", { value: i }, `layer ${i}`)));
    const go = h("button", { id: "att-go" }, "Capture");
    const grid = h("div", { class: "row", id: "att-grid" });
    const big = h("div", { id: "att-big" });
    const ent = h("canvas", { height: 70 });
    let chart, data;

    function select(i) {
      const m = data.maps[i];
      const cell = Math.max(8, Math.min(28, Math.floor(560 / m.cols)));
      const labels = data.tokens.map(visible);
      big.replaceChildren(h("div", { class: "row" }, h("b", {}, `layer ${m.layer}, head ${m.head}`), `(reads key/value head ${m.kv_head})`,
          h("span", { id: "att-entropy", dataset: { entropy: m.mean_entropy_bits } }, `mean entropy ${m.mean_entropy_bits.toFixed(3)} bits`)),
        h("div", { style: "display:grid;grid-template-columns:auto auto;gap:4px" },
          h("div", { class: "mono", style: `display:grid;grid-auto-rows:${cell}px;font-size:${Math.min(12, cell)}px;text-align:right` }, labels.map((l) => h("div", {}, l))),
          heatmap(m, cell)));
    }

    async function run() {
      data = await post("/lab/attention", { prompt: prompt.value, layers: [Number(layer.value)] });
      grid.replaceChildren(...data.maps.map((m, i) => h("div", { class: "clickable", title: `head ${m.head}: ${m.mean_entropy_bits.toFixed(2)} bits`, onclick: () => select(i) },
        h("div", { class: "muted" }, `head ${m.head}`), heatmap(m, Math.max(2, Math.floor(96 / m.cols))))));
      select(0);
      if (chart) chart.destroy();
      chart = new Chart(ent, { type: "bar", data: { labels: data.maps.map((m) => `head ${m.head}`), datasets: [{ label: "mean entropy (bits)", data: data.maps.map((m) => m.mean_entropy_bits), backgroundColor: "#2f5fd0" }] },
                              options: { animation: false, maintainAspectRatio: false } });
    }
    go.addEventListener("click", run);
    layer.addEventListener("change", run);
    el.append(h("div", { class: "row" }, prompt, layer, go),
      h("p", { class: "muted" }, "Rows are query tokens, columns the tokens they attend to (darker = more). Click a head to enlarge it."),
      grid, big, h("div", { class: "card chart" }, ent));
    run();
  },
};

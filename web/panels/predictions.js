// Predictions: the next-token distribution of a prompt as a top-k chart,
// with a temperature slider, and the logit lens: every layer's residual
// stream read through the final norm and head.
import { h, post, visible } from "../api.js";

export default {
  id: "predictions",
  title: "Predictions",
  mount(el) {
    const prompt = h("input", { type: "text", value: "The capital of France is", size: 50, id: "pred-prompt" });
    const chat = h("input", { type: "checkbox", id: "pred-chat" });
    const temp = h("input", { type: "range", min: "0.05", max: "2", step: "0.05", value: "1", id: "pred-temp" });
    const tempLabel = h("span", {}, "T = 1.00");
    const go = h("button", { id: "pred-go" }, "Predict");
    const top = h("div", { id: "pred-top" });
    const lens = h("div", { id: "pred-lens" });
    let chart, lensChart, timer;

    async function run(withLens) {
      const r = await post("/lab/predict", { prompt: prompt.value, chat: chat.checked, k: 10, temperature: Number(temp.value), lens: withLens, lens_k: 3 });
      const p = r.prediction;
      const canvas = h("canvas", { height: 110 });
      top.replaceChildren(h("div", { class: "muted" }, `${p.prompt_tokens} prompt tokens · entropy ${p.entropy_bits.toFixed(3)} bits at T = ${p.temperature}`),
        h("table", { id: "pred-table" }, p.top.map((t, i) => h("tr", { dataset: { token: t.token, prob: t.prob } },
          h("td", { class: "num" }, i + 1), h("td", { class: "mono" }, JSON.stringify(t.token)), h("td", { class: "num" }, `${(100 * t.prob).toFixed(2)}%`),
          h("td", {}, h("span", { class: "bar", style: `width:${t.prob * 300}px` }))))), h("div", { class: "chart" }, canvas));
      if (chart) chart.destroy();
      chart = new Chart(canvas, { type: "bar", data: { labels: p.top.map((t) => visible(t.token)), datasets: [{ data: p.top.map((t) => t.prob), backgroundColor: "#2f5fd0" }] },
                                 options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { min: 0, max: 1 } } } });
      if (!withLens) return;
      const rows = r.logit_lens;
      const lc = h("canvas", { height: 90 });
      lens.replaceChildren(h("h3", {}, "logit lens"), h("p", { class: "muted" }, "The last position's residual stream after the embedding and after each layer, through the final norm and head."),
        h("div", { class: "chart" }, lc), h("table", { id: "lens-table" }, h("tr", {}, h("th", {}, "after"), h("th", { class: "num" }, "entropy (bits)"), h("th", {}, "top 3")),
          rows.map((row) => h("tr", {}, h("td", {}, row.layer), h("td", { class: "num" }, row.entropy_bits.toFixed(2)),
            h("td", { class: "mono" }, row.top.map((t) => `${JSON.stringify(t.token)} ${(100 * t.prob).toFixed(1)}%`).join("   "))))));
      const final = rows[rows.length - 1].top[0];
      if (lensChart) lensChart.destroy();
      lensChart = new Chart(lc, { type: "line", data: { labels: rows.map((x) => x.layer), datasets: [
        { label: `p(${JSON.stringify(final.token)})`, data: rows.map((x) => (x.top.find((t) => t.id === final.id) || { prob: x.top_prob_of_final ?? 0 }).prob), borderColor: "#2f5fd0" },
        { label: "entropy (bits)", data: rows.map((x) => x.entropy_bits), borderColor: "#b3261e", yAxisID: "y2" }] },
        options: { animation: false, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 }, y2: { position: "right", min: 0 } } } });
    }
    temp.addEventListener("input", () => {
      tempLabel.textContent = `T = ${Number(temp.value).toFixed(2)}`;
      clearTimeout(timer);
      timer = setTimeout(() => run(false), 120);
    });
    go.addEventListener("click", () => run(true));
    prompt.addEventListener("keydown", (e) => e.key === "Enter" && run(true));
    el.append(h("div", { class: "row" }, prompt, h("label", {}, chat, " chat template"), go),
      h("div", { class: "row" }, "temperature", temp, tempLabel), top, lens);
    run(true);
  },
};

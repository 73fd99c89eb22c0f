// Embeddings: a token's row of the embedding table (its first values as a
// chart, its norm), its nearest tokens by cosine, and the same token in two
// contexts: identical input vector, different hidden state after a layer.
import { h, post, visible } from "../api.js";

export default {
  id: "embeddings",
  title: "Embeddings",
  mount(el, info) {
    const text = h("input", { type: "text", value: " cat", id: "emb-text", size: 20 });
    const go = h("button", { id: "emb-go" }, "Show");
    const out = h("div", { id: "emb-out" });
    const ctxA = h("input", { type: "text", value: "The cat sat on the mat.", size: 40, id: "emb-ctx-a" });
    const ctxB = h("input", { type: "text", value: "A cat is a small animal.", size: 40, id: "emb-ctx-b" });
    const layer = h("input", { type: "number", min: "0", max: String(info.summary.num_layers - 1), value: String(Math.floor(info.summary.num_layers / 2)), id: "emb-layer", style: "width:5em" });
    const check = h("div", { class: "card", id: "emb-check" });
    let chart;

    async function run() {
      const r = await post("/lab/embeddings", { text: text.value, values: 64, k: 10, contexts: [ctxA.value, ctxB.value], layer: Number(layer.value) });
      const t = r.tokens[0];
      const canvas = h("canvas", { height: 90 });
      out.replaceChildren(
        h("div", { class: "row" }, h("b", {}, JSON.stringify(t.token)), `id ${t.id}`, `dimension ${t.dim}`,
          h("span", { id: "emb-norm", dataset: { norm: t.norm } }, `norm ${t.norm.toFixed(4)}`),
          r.tokens.length > 1 ? h("span", { class: "muted" }, `(the text has ${r.tokens.length} tokens; showing the first)`) : ""),
        h("div", { class: "card" }, h("div", { class: "muted" }, `first ${t.values.length} of ${t.dim} values`), h("div", { class: "chart" }, canvas)),
        h("div", { class: "card" }, h("b", {}, "nearest tokens by cosine"),
          h("table", { id: "emb-neighbours" }, t.neighbours.map((n) => h("tr", {}, h("td", { class: "mono" }, visible(n.token)), h("td", { class: "num" }, n.id),
            h("td", { class: "num" }, n.cosine.toFixed(4)), h("td", {}, h("span", { class: "bar", style: `width:${Math.max(0, n.cosine) * 200}px` })))))));
      if (chart) chart.destroy();
      chart = new Chart(canvas, { type: "bar", data: { labels: t.values.map((_, i) => i), datasets: [{ label: "value", data: t.values, backgroundColor: "#2f5fd0" }] },
                                 options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { ticks: { maxTicksLimit: 16 } } } } });
      const c = r.context_check;
      check.replaceChildren(c ? h("div", {},
        h("div", {}, `${JSON.stringify(c.token)} in both texts`),
        h("div", { id: "emb-embed-diff" }, `input embedding: max |A − B| = ${c.embedding_max_abs_diff} (a row of the table: the same in every context)`),
        h("div", {}, `hidden state after layer ${c.layer}: max |A − B| = ${c.hidden_max_abs_diff.toFixed(4)}, cosine ${c.hidden_cosine.toFixed(4)} (mixed with its context)`))
        : h("div", { class: "muted" }, r.context_error || "the token does not occur in both texts"));
    }
    go.addEventListener("click", run);
    text.addEventListener("keydown", (e) => e.key === "Enter" && run());
    el.append(h("div", { class: "row" }, "token text", text, go, h("span", { class: "muted" }, "(mind the leading space: ' cat' and 'cat' are different tokens)")), out,
      h("h3", {}, "context-free vs contextual"), h("div", { class: "row" }, "A", ctxA, "B", ctxB, "layer", layer), check);
    run();
  },
};

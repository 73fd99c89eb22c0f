// Inside the file: the parameter tree with counts and bytes per group and
// tensor, and one tensor opened up: its values, and for a quantized tensor
// the packed 32-bit words, the n-bit fields unpacked from them, each group's
// scale and bias, with statistics and a histogram of the whole tensor.
import { h, get, post, bytesLabel, countLabel } from "../api.js";

export default {
  id: "inside",
  title: "Inside the file",
  async mount(el) {
    const s = await get("/lab/params");
    const view = h("div", { id: "inside-view" });
    let chart;

    async function open(name, row = 0) {
      const t = await post("/lab/tensor", { name, row, col: 0, count: 16, bins: 32 });
      const canvas = h("canvas", { height: 80 });
      const groups = (t.groups || []).map((g) => h("div", { class: "card" },
        h("div", {}, `group ${g.group}: scale ${g.scale.toPrecision(5)}, bias ${g.bias.toPrecision(5)}, fields ${g.field_min}..${g.field_max}`),
        h("div", { class: "muted" }, "packed words"), h("div", { class: "hex mono", dataset: { words: JSON.stringify(g.words) } }, g.words.map((w) => h("span", {}, `0x${(w >>> 0).toString(16).padStart(8, "0")}`))),
        h("div", { class: "muted" }, `${t.bits}-bit fields (as the kernel reads them)`), h("div", { class: "mono" }, g.fields.join(" ")),
        h("div", { class: "muted" }, "values = scale × field + bias"), h("div", { class: "mono" }, g.values.map((v) => v.toFixed(4)).join(" "))));
      view.replaceChildren(h("h3", {}, t.name),
        h("div", { class: "row" }, h("span", {}, `shape [${t.shape}]`), h("span", {}, `stored [${t.stored_shape}] ${t.dtype}`),
          h("span", {}, t.bits ? `${t.bits}-bit, groups of ${t.group_size}` : "not quantized"),
          h("label", {}, "row ", h("input", { type: "number", min: 0, max: t.shape[0] - 1, value: row, style: "width:6em", onchange: (e) => open(name, Number(e.target.value)) }))),
        h("div", { class: "row stats" }, [`min ${t.stats.min.toFixed(4)}`, `max ${t.stats.max.toFixed(4)}`, `mean ${t.stats.mean.toExponential(3)}`,
          `std ${t.stats.std.toFixed(4)}`, `zeros ${t.stats.zeros}`, `count ${t.stats.count}`].map((x) => h("span", {}, x))),
        h("div", { class: "card" }, h("div", { class: "muted" }, `values from row ${t.row}, column ${t.col}`), h("div", { class: "mono", id: "inside-values" }, t.values.map((v) => v.toFixed(4)).join(" "))),
        ...groups, h("div", { class: "card" }, h("div", { class: "muted" }, "histogram of every value"), h("div", { class: "chart" }, canvas)));
      const hist = t.histogram, n = hist.counts.length, w = (hist.hi - hist.lo) / n;
      if (chart) chart.destroy();
      chart = new Chart(canvas, { type: "bar", data: { labels: hist.counts.map((_, i) => (hist.lo + (i + 0.5) * w).toFixed(3)), datasets: [{ data: hist.counts, backgroundColor: "#2f5fd0" }] },
                                 options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } } });
    }

    const tensor = (p) => h("tr", {}, h("td", { class: "mono clickable", onclick: () => open(p.name), dataset: { name: p.name } }, p.name),
      h("td", {}, `[${p.shape}]`), h("td", {}, p.bits ? `${p.bits}-bit/${p.group_size}` : p.dtype), h("td", { class: "num" }, countLabel(p.params)), h("td", { class: "num" }, bytesLabel(p.bytes)));
    const byLayer = new Map();
    // Embedding first, then the layers in number order, then the rest.
    const rank = (p) => (p.group === "embedding" ? -1 : p.group === "layer" ? p.layer : 1e9);
    const ordered = [...s.params].sort((a, b) => rank(a) - rank(b));
    for (const p of ordered) {
      const key = p.group === "layer" ? `layer ${p.layer}` : p.group;
      if (!byLayer.has(key)) byLayer.set(key, []);
      byLayer.get(key).push(p);
    }
    const tree = h("div", { class: "tree card" }, [...byLayer].map(([k, ps]) => h("details", { open: k === "embedding" },
      h("summary", {}, `${k}: ${ps.length} tensors, ${countLabel(ps.reduce((a, p) => a + p.params, 0))} parameters, ${bytesLabel(ps.reduce((a, p) => a + p.bytes, 0))}`),
      h("table", {}, ps.map(tensor)))));
    el.append(
      h("div", { class: "card" }, h("b", { id: "inside-total", dataset: { params: s.total_params } },
        `${countLabel(s.total_params)} parameters (${s.size_label}), ${bytesLabel(s.total_bytes)}, ${s.bits_per_param.toFixed(2)} bits per parameter`),
        h("table", {}, h("tr", {}, h("th", {}, "group"), h("th", { class: "num" }, "tensors"), h("th", { class: "num" }, "parameters"), h("th", { class: "num" }, "bytes")),
          s.groups.map((g) => h("tr", {}, h("td", {}, g.name), h("td", { class: "num" }, g.tensors), h("td", { class: "num" }, countLabel(g.params)), h("td", { class: "num" }, bytesLabel(g.bytes)))))),
      h("div", { class: "cols" }, tree, view));
    open(s.params.find((p) => p.bits) ? s.params.find((p) => p.bits).name : s.params[0].name);
  },
};

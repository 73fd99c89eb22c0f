// Surgery: apply an edit to the live model's weights (zero, scale, noise,
// set, shifts of packed words or fields, bit flips), compare the unedited and
// edited model on a prompt, then restore the original bytes (checked by hash).
// While an edit is applied, every answer of this server comes from the
// edited model.
import { h, get, post, visible } from "../api.js";

function reading(title, r) {
  return h("div", { class: "card" }, h("b", {}, title), h("div", { class: "muted" }, `entropy ${r.entropy_bits.toFixed(3)} bits`),
    h("table", {}, r.top.map((t) => h("tr", { dataset: { token: t.token } }, h("td", { class: "mono" }, JSON.stringify(t.token)),
      h("td", { class: "num" }, `${(100 * t.prob).toFixed(2)}%`), h("td", {}, h("span", { class: "bar", style: `width:${t.prob * 200}px` }))))),
    r.text !== undefined ? h("div", { class: "mono" }, visible(r.text)) : "");
}

export default {
  id: "surgery",
  title: "Surgery",
  async mount(el) {
    const params = await get("/lab/params");
    const op = h("select", { id: "surg-op" }, ["scale", "zero", "noise", "set", "shift-words", "shift-fields", "flip-bits"].map((o) => h("option", {}, o)));
    const target = h("input", { type: "text", value: "model.layers.*.mlp.down_proj.weight", size: 44, list: "surg-names", id: "surg-target" });
    const names = h("datalist", { id: "surg-names" }, params.params.map((p) => h("option", { value: p.name })));
    const value = h("input", { type: "number", value: "0.5", step: "any", style: "width:6em", id: "surg-value" });
    const rate = h("input", { type: "number", value: "0.001", step: "any", style: "width:6em", id: "surg-rate" });
    const seed = h("input", { type: "number", value: "0", style: "width:5em" });
    const relative = h("input", { type: "checkbox" });
    const prompt = h("input", { type: "text", value: "The capital of France is", size: 40, id: "surg-prompt" });
    const apply = h("button", { id: "surg-apply" }, "Apply and compare");
    const restore = h("button", { class: "secondary", id: "surg-restore" }, "Restore");
    const out = h("div", { id: "surg-out" });
    const state = h("div", { class: "stats", id: "surg-state" });

    async function refresh() {
      const s = await get("/lab/surgery");
      state.textContent = s.edits.length ? `applied: ${s.edits.map((e) => `${e.op} ${e.target}`).join("; ")} — weights hash ${s.hash}` : `no edit applied — weights hash ${s.hash}`;
      state.dataset.hash = s.hash;
    }
    apply.addEventListener("click", async () => {
      apply.disabled = true;
      try {
        const r = await post("/lab/surgery/apply", { op: op.value, target: target.value, value: Number(value.value), rate: Number(rate.value),
                                                     seed: Number(seed.value), relative: relative.checked, prompts: [prompt.value], k: 5, generate: 16, chat: false });
        const c = r.cases[0];
        out.replaceChildren(h("div", { class: "row" }, `${r.tensors.length} tensors edited, ${r.elements_changed} stored elements changed; hash ${r.hash_before} → ${r.hash_edited}`),
          h("div", { class: "cols" }, reading("unedited", c.unedited), reading("edited", c.edited)));
      } finally {
        apply.disabled = false;
        refresh();
      }
    });
    restore.addEventListener("click", async () => {
      const r = await post("/lab/surgery/restore", {});
      out.prepend(h("div", { class: "card", id: "surg-restored", dataset: { exact: r.restored_bit_exact } },
        `${r.restored} tensors restored; hash ${r.hash}${r.restored_bit_exact ? " — bit-exact, the original weights" : " — DIFFERS from the original"}`));
      refresh();
    });
    el.append(h("p", { class: "muted" }, "Edits apply to the served model itself (every API answer uses it until you restore) and clear the prompt cache."),
      h("div", { class: "row" }, op, target, names, "value", value, h("label", {}, relative, " relative (noise)"), "rate", rate, "seed", seed),
      h("div", { class: "row" }, "prompt", prompt, apply, restore), state, out);
    refresh();
  },
};

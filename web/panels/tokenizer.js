// Tokenizer: two texts side by side, each as its tokens (the text each
// token stands for, its id, its vocabulary string and raw bytes, special
// tokens marked), with the counts, the round trip, and the vocabulary's facts.
import { h, post, visible } from "../api.js";

const COLORS = ["#fde2e4", "#e2ece9", "#fff1e6", "#dfe7fd", "#f0efeb", "#e9edc9"];

function render(box, r) {
  box.replaceChildren(
    h("div", { class: "row" }, h("b", {}, `${r.count} tokens`), r.round_trip ? "" : h("span", { class: "muted" }, "(decode differs from the text)")),
    h("div", { class: "tokens", dataset: { ids: JSON.stringify(r.tokens.map((t) => t.id)) } },
      r.tokens.map((t, i) => h("span", { class: `tok${t.special ? " special" : ""}`, style: `background:${COLORS[i % COLORS.length]}`,
                                          title: `id ${t.id}\nvocabulary: ${t.piece}\nbytes: ${t.bytes}` },
                                visible(t.text), h("sub", {}, t.id)))),
    h("table", { class: "mono" },
      h("tr", {}, h("th", { class: "num" }, "id"), h("th", {}, "token"), h("th", {}, "text"), h("th", {}, "bytes"), h("th", {}, "")),
      r.tokens.map((t) => h("tr", {}, h("td", { class: "num" }, t.id), h("td", {}, t.piece), h("td", {}, visible(t.text)),
                             h("td", {}, t.bytes), h("td", {}, t.special ? "special" : "")))));
}

export default {
  id: "tokenizer",
  title: "Tokenizer",
  mount(el) {
    const a = h("textarea", { id: "tok-a" }, "Hello world! Tokenizers split text into pieces.");
    const b = h("textarea", { id: "tok-b" }, "🦀 Rust, 12345 and  double  spaces");
    const special = h("input", { type: "checkbox", id: "tok-special", checked: true });
    const chat = h("input", { type: "checkbox", id: "tok-chat" });
    const outA = h("div", { id: "tok-out-a" }), outB = h("div", { id: "tok-out-b" });
    const facts = h("div", { class: "card muted", id: "tok-facts" });
    let timer;
    async function run() {
      const r = await post("/lab/tokenize", { texts: [a.value, b.value], add_special_tokens: special.checked, chat: chat.checked });
      render(outA, r.results[0]);
      render(outB, r.results[1]);
      facts.replaceChildren(`vocabulary: ${r.vocab_size} tokens (${r.model_type}); BOS ${r.bos_id ?? "none"}; EOS ${r.eos_ids.join(", ")}; special: `,
        ...r.special_tokens.slice(0, 24).map((t) => h("code", {}, ` ${t.content} (${t.id})`)));
    }
    const soon = () => { clearTimeout(timer); timer = setTimeout(run, 250); };
    for (const x of [a, b]) x.addEventListener("input", soon);
    for (const x of [special, chat]) x.addEventListener("change", run);
    el.append(
      h("div", { class: "row" }, h("label", {}, special, " add special tokens (BOS/EOS)"), h("label", {}, chat, " as a user message through the chat template")),
      h("div", { class: "cols" }, h("div", {}, a, outA), h("div", {}, b, outB)), facts);
    run();
  },
};

// Chat: a conversation streamed from /v1/chat/completions. Each reply is
// shown token by token, shaded by the probability the model gave the token
// it picked (hover for the alternatives): the autoregressive loop made
// visible. Live: time to first token and tokens per second as they arrive;
// at the end the server's own statistics (prefill and generation speed,
// tokens served from the prompt cache, MLX peak memory).
import { h, streamChat, probColor, visible } from "../api.js";

export default {
  id: "chat",
  title: "Chat",
  mount(el, info) {
    const messages = [];
    const log = h("div", { class: "chat-log" });
    const system = h("input", { type: "text", placeholder: "system message (optional)", size: 60, id: "chat-system" });
    const temp = h("input", { type: "number", value: "0", min: "0", max: "2", step: "0.1", id: "chat-temp", style: "width:5em" });
    const maxTokens = h("input", { type: "number", value: "128", min: "1", max: "4096", id: "chat-max", style: "width:6em" });
    const input = h("textarea", { id: "chat-input", placeholder: "Say something… (Enter sends, Shift+Enter for a new line)" });
    const send = h("button", { id: "chat-send" }, "Send");
    const reset = h("button", { class: "secondary", id: "chat-reset" }, "New conversation");
    const stats = h("div", { class: "stats", id: "chat-stats" });

    async function turn() {
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      send.disabled = true;
      if (!messages.length && system.value.trim()) messages.push({ role: "system", content: system.value.trim() });
      messages.push({ role: "user", content: text });
      log.append(h("div", { class: "msg user" }, text));
      const turnNo = messages.filter((m) => m.role === "user").length;
      const tokens = h("div", { class: "tokens msg assistant", id: `reply-${turnNo}` });
      log.append(tokens);
      let reply = "", n = 0, first = null, last = 0;
      delete stats.dataset.final;
      delete stats.dataset.done;
      try {
        await streamChat({ messages, temperature: Number(temp.value), max_tokens: Number(maxTokens.value),
                           logprobs: true, top_logprobs: 5, stream_options: { include_usage: true } }, (chunk, t) => {
          for (const c of chunk.choices || []) {
            const lp = c.logprobs && c.logprobs.content;
            for (const entry of lp || []) {
              const p = Math.exp(entry.logprob);
              const alts = entry.top_logprobs.map((a) => `${JSON.stringify(a.token)} ${(100 * Math.exp(a.logprob)).toFixed(1)}%`).join("\n");
              tokens.append(h("span", { class: "tok", style: `background:${probColor(p)}`, title: `p = ${(100 * p).toFixed(2)}%\n${alts}`,
                                        dataset: { p: p.toFixed(6) } }, visible(entry.token)));
              n++;
            }
            if (c.delta && c.delta.content) reply += c.delta.content;
          }
          if (n && first === null) first = t;
          last = t;
          if (first !== null && !stats.dataset.final)
            stats.textContent = `first token after ${first.toFixed(3)} s · ${n} tokens · ${(n > 1 ? (n - 1) / (last - first) : 0).toFixed(1)} tok/s (as received)`;
          if (chunk.stats) {
            const s = chunk.stats;
            stats.textContent = `prompt ${s.prompt_tokens} tokens (${s.cached_tokens} from the prompt cache) at ${s.prompt_tps.toFixed(1)} tok/s · ` +
              `${s.generation_tokens} generated at ${s.generation_tps.toFixed(1)} tok/s · first token after ${s.time_to_first_token.toFixed(3)} s · ` +
              `MLX peak memory ${s.peak_memory_gb.toFixed(3)} GB`;
            stats.dataset.cached = s.cached_tokens;
            stats.dataset.final = "1";
          }
        });
        messages.push({ role: "assistant", content: reply });
        tokens.dataset.text = reply;
        stats.dataset.done = "1";
      } finally {
        send.disabled = false;
      }
    }

    send.addEventListener("click", turn);
    input.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); turn(); } });
    reset.addEventListener("click", () => { messages.length = 0; log.replaceChildren(); stats.textContent = ""; });
    el.append(
      h("p", { class: "muted" }, `Talk to ${info.model.id}. Each token is shaded by its probability; hover for the top 5 alternatives. The server keeps the conversation's KV cache, so each turn prefills only its new tokens.`),
      h("div", { class: "row" }, system, "temperature", temp, "max tokens", maxTokens, reset),
      log, h("div", { class: "row" }, input), h("div", { class: "row" }, send), stats);
  },
};

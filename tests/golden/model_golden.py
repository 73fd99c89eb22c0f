"""Golden outputs of the two model oracles, for tests/models/*_test.cpp.

1. llama.cpp (llama-cpp-python) on the default GGUF: token ids of 12 prompts,
   last-position logits, and 32-token greedy continuations.
2. mlx-lm on MLX-format copies of the same model made without lmlab's code:
   the GGUF is dequantized to float32 with the `gguf` package (q/k rows
   un-permuted back to the HF layout) and written as an HF safetensors dir;
   `mlx_lm.convert -q` makes a 4-bit group-32 MLX dir from it. Logits, top-5
   next-token probabilities and greedy continuations of mlx-lm on both are
   saved for the same prompt ids, and mlx-lm's generation loop (chunked
   prefill, repetition penalty) on the float32 copy.
3. Tiny random-weight checkpoints of every family lmlab supports, built with
   mlx-lm's own model classes, with their float32 logits on random ids.
"""
import json
import shutil
import subprocess
import sys

import numpy as np

from _common import FIXTURES, MODEL, out_dir

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 5, 8, 13,",
    "Translate to French: I love reading books.",
    "The mitochondria is the powerhouse of",
    "¿Dónde está la biblioteca? Está",
    "Water boils at 100 degrees Celsius, which is",
    "import numpy as np\nx = np.arange(10)\nprint(",
    "The quick brown fox jumps over the lazy",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY_TOKENS = 32


def llamacpp_golden(model_path, out_file):
    from llama_cpp import Llama

    # F32 KV cache: llama.cpp's default F16 cache alone moves logits by ~1e-2.
    llm = Llama(model_path=str(model_path), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0,
                type_k=0, type_v=0, flash_attn=False)
    cases = []
    for text in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        last = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        greedy, margins = [], []
        for _ in range(GREEDY_TOKENS):
            step = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.sort(step)[-2:]
            greedy.append(int(np.argmax(step)))
            margins.append(float(top2[1] - top2[0]))
            llm.eval([greedy[-1]])
        cases.append({"text": text, "ids": ids, "logits": last.tolist(), "greedy": greedy, "margins": margins})
    out_file.write_text(json.dumps({"cases": cases}))
    return cases


def write_gguf_f32(dest):
    """The default GGUF with every tensor dequantized to F32 (gguf package), all
    metadata kept: llama.cpp then multiplies in float32 instead of quantizing
    activations to Q8_1, so its arithmetic matches lmlab's up to summation order."""
    import gguf

    r = gguf.GGUFReader(str(MODEL))
    w = gguf.GGUFWriter(str(dest), "llama")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(f.types[0])
        sub = gguf.GGUFValueType(f.types[1]) if vtype == gguf.GGUFValueType.ARRAY else None
        val = 0 if name == "general.file_type" else f.contents()
        w.add_key_value(name, val, vtype, sub)
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def unpermute(w, n_head):
    # llama.cpp's converter interleaves the rotary halves of each head's rows.
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def write_hf_f32(dest):
    """Dequantize the GGUF into an HF-layout float32 safetensors dir (no lmlab code)."""
    import gguf
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(str(MODEL))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.")}
    n_head, n_kv = f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    tensors = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        else:
            _, layer, kind, _ = t.name.split(".")
            name = f"model.layers.{layer}.{NAMES[kind]}.weight"
            if kind == "attn_q":
                w = unpermute(w, n_head)
            elif kind == "attn_k":
                w = unpermute(w, n_kv)
        tensors[name] = np.ascontiguousarray(w)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": f["llama.embedding_length"], "intermediate_size": f["llama.feed_forward_length"],
        "num_hidden_layers": f["llama.block_count"], "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "rms_norm_eps": f["llama.attention.layer_norm_rms_epsilon"],
        "rope_theta": f["llama.rope.freq_base"], "max_position_embeddings": f["llama.context_length"],
        "vocab_size": f["llama.vocab_size"], "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    # Tokenizer files from the GGUF vocabulary (byte-level BPE).
    fields = r.fields
    toks = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in fields["tokenizer.ggml.tokens"].data]
    merges = [bytes(fields["tokenizer.ggml.merges"].parts[i]).decode("utf-8") for i in fields["tokenizer.ggml.merges"].data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    vocab = {t: i for i, t in enumerate(toks)}
    tk = Tokenizer(models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    tk.save(str(dest / "tokenizer.json"))
    tcfg = {"bos_token": toks[1], "eos_token": toks[2], "unk_token": toks[0], "pad_token": toks[2],
            "chat_template": f["tokenizer.chat_template"], "add_bos_token": False,
            "tokenizer_class": "GPT2Tokenizer", "model_max_length": 8192}
    (dest / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2))


def mlxlm_golden(model_dir, cases, out_file):
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(model_dir))
    res = []
    for c in cases:
        ids = c["ids"]
        logits = model(mx.array([ids]))[0, -1].astype(mx.float32)
        greedy = []
        seq = list(ids)
        from mlx_lm.models.cache import make_prompt_cache
        cache = make_prompt_cache(model)
        out = model(mx.array([seq]), cache=cache)
        for _ in range(GREEDY_TOKENS):
            tok = int(mx.argmax(out[0, -1]).item())
            greedy.append(tok)
            out = model(mx.array([[tok]]), cache=cache)
        # The next-token distribution at temperatures 1 and 0.5, by mlx-lm's MLX
        # (softmax of logits / t): the independent value behind `predict`'s test.
        top = np.argsort(-np.array(logits))[:5]
        probs = {t: np.array(mx.softmax(logits / t)) for t in (1.0, 0.5)}
        top_probs = [[int(i), float(probs[1.0][i]), float(probs[0.5][i])] for i in top]
        res.append({"ids": ids, "logits": np.array(logits).tolist(), "greedy": greedy, "top": top_probs})
    out_file.write_text(json.dumps({"cases": res}))


PENALTY = 1.3  # repetition penalty of the generation golden, over the last 20 tokens
PENALTY_PREFILL_STEP = 5
# Longer than the penalty's 20-token window: only its last 20 tokens may be penalized at first,
# so " Paris" (early in the prompt, outside the window) stays a free pick.
PENALTY_LONG_PROMPT = ("Paris is the capital of France, Berlin is the capital of Germany, Madrid is the "
                       "capital of Spain, and Rome is the capital of Italy. Quiz: the capital of France is")


def mlxlm_generation_golden(model_dir, cases, out_file):
    """mlx-lm's own generation loop (generate_step: chunked prefill, the
    repetition penalty as a logits processor, greedy sampler) on the first
    prompts, with the top-2 margin of each step's penalized log-probabilities."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_logits_processors

    model, tok = load(str(model_dir))
    res = []
    for ids in [c["ids"] for c in cases[:4]] + [tok.encode(PENALTY_LONG_PROMPT)]:
        procs = make_logits_processors(repetition_penalty=PENALTY, repetition_context_size=20)
        tokens, margins = [], []
        for t, logprobs in generate_step(mx.array(ids), model, max_tokens=GREEDY_TOKENS,
                                           logits_processors=procs, prefill_step_size=PENALTY_PREFILL_STEP):
            top2 = np.sort(np.array(logprobs, dtype=np.float32))[-2:]
            tokens.append(int(t))
            margins.append(float(top2[1] - top2[0]))
        res.append({"ids": list(ids), "greedy": tokens, "margins": margins})
    out_file.write_text(json.dumps({"repetition_penalty": PENALTY, "repetition_context": 20,
                                    "prefill_step": PENALTY_PREFILL_STEP, "cases": res}))


TINY = {
    # name: (module, args); every family and feature lmlab supports.
    "llama": ("llama", dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=160,
                            rope_theta=10000.0, tie_word_embeddings=False)),
    "llama3_scaled": ("llama", dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                                    num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-5, vocab_size=160,
                                    rope_theta=500000.0, tie_word_embeddings=True,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 16})),
    "llama_linear_rope": ("llama", dict(model_type="llama", hidden_size=64, num_hidden_layers=2,
                                        intermediate_size=96, num_attention_heads=4, num_key_value_heads=4,
                                        rms_norm_eps=1e-5, vocab_size=160, rope_theta=10000.0,
                                        tie_word_embeddings=True, rope_scaling={"type": "linear", "factor": 2.0})),
    "llama_yarn": ("llama", dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=160,
                                 rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=16384,
                                 rope_scaling={"type": "yarn", "factor": 4.0,
                                               "original_max_position_embeddings": 4096})),
    "mistral": ("llama", dict(model_type="mistral", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                              num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=160,
                              rope_theta=1000000.0, tie_word_embeddings=False)),
    # Qwen checkpoints use eps 1e-6, which moves these tiny logits by only ~4e-5;
    # 2e-5 and 3e-5 (neither a default) make a dropped or misread eps show (~1e-3).
    "qwen2": ("qwen2", dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=2e-5, vocab_size=160,
                            tie_word_embeddings=True)),
    "qwen3": ("qwen3", dict(model_type="qwen3", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=3e-5, vocab_size=160,
                            max_position_embeddings=512, head_dim=32, tie_word_embeddings=False,
                            rope_theta=1000000.0)),
}


def tiny_golden(root):
    import importlib

    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.utils import quantize_model

    rng = np.random.default_rng(0)
    for i, (name, (module, args)) in enumerate(sorted(TINY.items())):
        for quant in (False, True):
            mx.random.seed(i)
            mod = importlib.import_module(f"mlx_lm.models.{module}")
            model = mod.Model(mod.ModelArgs(**args))
            # Random norms and biases too, so a wrong norm or bias shows.
            model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.5 + 1.0 if p.ndim == 1 else p,
                                  model.parameters()))
            config = dict(args)
            if quant:
                def pred(path, m):
                    if "down_proj" in path:
                        return {"group_size": 32, "bits": 8}
                    return hasattr(m, "to_quantized") and m.weight.shape[-1] % 32 == 0
                model, config = quantize_model(model, config, group_size=32, bits=4, quant_predicate=pred)
            d = root / (name + ("_q4" if quant else ""))
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            weights = dict(tree_flatten(model.parameters()))
            mx.save_safetensors(str(d / "model.safetensors"), weights, metadata={"format": "mlx"})
            (d / "config.json").write_text(json.dumps(config, indent=2))
            ids = mx.array(rng.integers(0, args["vocab_size"], size=(2, 11)).astype(np.int32))
            logits = model(ids).astype(mx.float32)
            mx.save_safetensors(str(d / "golden.safetensors"), {"ids": ids, "logits": logits})


def main():
    dest = out_dir("model")
    cases = llamacpp_golden(MODEL, dest / "llamacpp.json")
    f32_gguf = dest / "smollm2-f32.gguf"
    write_gguf_f32(f32_gguf)
    llamacpp_golden(f32_gguf, dest / "llamacpp_f32.json")
    print(f"llama.cpp: {len(cases)} prompts", file=sys.stderr)
    f32 = dest / "smollm2-f32"
    shutil.rmtree(f32, ignore_errors=True)
    write_hf_f32(f32)
    mlxlm_golden(f32, cases, dest / "mlxlm_f32.json")
    mlxlm_generation_golden(f32, cases, dest / "mlxlm_generate_penalty.json")
    q4 = dest / "smollm2-mlx-q4"
    shutil.rmtree(q4, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(f32), "--mlx-path", str(q4),
                    "-q", "--q-group-size", "32", "--q-bits", "4"], check=True, stdout=subprocess.DEVNULL)
    mlxlm_golden(q4, cases, dest / "mlxlm_q4.json")
    tiny_golden(out_dir("model/tiny"))


if __name__ == "__main__":
    main()

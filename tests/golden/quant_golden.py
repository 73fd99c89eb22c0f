"""Oracles for lmlab's quant/ module (ppl, KL, convert), computed with mlx-lm,
llama.cpp and MLX's Python API, no lmlab code:

- perplexity with mlx-lm: mlx_lm.perplexity.eval_ppl (mlx-lm's own function)
  on disjoint windows, and a sliding-window evaluation (context 64, stride 32)
  written here with numpy from mlx-lm's logits, with the per-token KL
  divergence against the float model and top-1 agreement, on the tiny Llama
  fixture (4-bit and float copies of the same random weights; mlx-lm's float
  matmuls run on reference BLAS here, too slow for the real model in CI).
- perplexity with llama.cpp on the real model: the float32 GGUF of SmolLM2,
  sliding windows evaluated one by one, over tokens of Super Bowl JSONL lines
  made by mlx-lm's CompletionsDataset (which tokenize_file must reproduce).
- convert: a small random Llama (8 layers, untied head, SmolLM2's tokenizer)
  converted by mlx_lm.convert with several recipes, and mx.quantize of one of
  its matrices at every bits × group size.
"""
import json
import shutil
import sys

import numpy as np

from _common import FIXTURES, SHARED, out_dir

CONTEXT, STRIDE = 64, 32
JSONL_LINES = 12
LLAMACPP_TOKENS = 161  # five windows: llama.cpp runs float32 matmuls slowly on 2 cores
CONVERSIONS = {
    # name: mlx_lm.convert keyword arguments
    "uniform_q4_g64_bf16": dict(quantize=True, q_bits=4, q_group_size=64, dtype="bfloat16"),
    "uniform_q3_g128_f16": dict(quantize=True, q_bits=3, q_group_size=128, dtype="float16"),
    "mixed_3_6_g64_f16": dict(quantize=True, q_group_size=64, quant_predicate="mixed_3_6", dtype="float16"),
    "mixed_2_6_g32_f32": dict(quantize=True, q_group_size=32, quant_predicate="mixed_2_6", dtype="float32"),
}


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def windows(n):
    """Window i feeds [i*stride, i*stride + context) and scores the tokens no earlier window scored."""
    out, scored_to, begin = [], 0, 0
    while True:
        end = min(begin + CONTEXT, n)
        first = max(scored_to, begin + 1)
        if first < end:
            out.append((begin, end, first))
        scored_to = end
        if end == n:
            return out
        begin += STRIDE


def sliding(tokens, logprobs_of, logprobs_ref_of=None):
    """Per scored token: nll (and with a reference: its nll, KL(ref || model), same argmax)."""
    r = {"nll": [], "nll_ref": [], "kl": [], "same_top1": []}
    for begin, end, first in windows(len(tokens)):
        lp = logprobs_of(tokens[begin:end])
        lr = logprobs_ref_of(tokens[begin:end]) if logprobs_ref_of else None
        for t in range(first, end):
            p = t - 1 - begin
            r["nll"].append(-lp[p, tokens[t]])
            if lr is not None:
                r["nll_ref"].append(-lr[p, tokens[t]])
                r["kl"].append(float((np.exp(lr[p]) * (lr[p] - lp[p])).sum()))
                r["same_top1"].append(float(lr[p].argmax() == lp[p].argmax()))
    r["ppl"] = float(np.exp(np.mean(r["nll"])))
    if logprobs_ref_of:
        r["ppl_ref"] = float(np.exp(np.mean(r["nll_ref"])))
        r["kl_mean"] = float(np.mean(r["kl"]))
        r["top1"] = float(np.mean(r["same_top1"]))
    return r


def mlxlm_ppl_golden(dest):
    import mlx.core as mx
    from mlx_lm.perplexity import eval_ppl

    from mlx_lm.utils import load_model

    tiny = FIXTURES / "model" / "tiny"
    q4, _ = load_model(tiny / "llama_q4")
    f32, _ = load_model(tiny / "llama")
    tokens = np.random.default_rng(3).integers(0, 160, size=10 * CONTEXT + 17).tolist()
    n = len(tokens) // CONTEXT * CONTEXT
    ppl, se = eval_ppl(q4, mx.array(tokens[:n]).reshape(-1, CONTEXT), batch_size=4)
    run = lambda m: lambda ids: log_softmax(np.array(m(mx.array([ids]))[0].astype(mx.float32)))
    golden = {"tokens": tokens, "context": CONTEXT, "stride": STRIDE,
              "disjoint": {"tokens": n, "ppl": ppl, "se": se}, "sliding": sliding(tokens, run(q4), run(f32))}
    (dest / "ppl_tiny.json").write_text(json.dumps(golden))
    print(f"tiny: disjoint ppl {ppl:.4f}, sliding ppl {golden['sliding']['ppl']:.4f}, "
          f"KL {golden['sliding']['kl_mean']:.5f}", file=sys.stderr)


def llamacpp_ppl_golden(dest):
    from llama_cpp import Llama
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_lm.tuner.datasets import CompletionsDataset

    tok = load_tokenizer(FIXTURES / "model" / "smollm2-f32")
    lines = (SHARED / "data" / "superbowl" / "valid.jsonl").read_text().splitlines()[:JSONL_LINES]
    (dest / "superbowl12.jsonl").write_text("\n".join(lines) + "\n")
    data = CompletionsDataset([json.loads(l) for l in lines], tok, "prompt", "completion", mask_prompt=False)
    tokens = [t for i in range(len(data)) for t in data.process(data[i])[0]]
    # F32 KV cache: llama.cpp's default F16 cache alone moves logits by ~1e-2.
    llm = Llama(model_path=str(FIXTURES / "model" / "smollm2-f32.gguf"), n_ctx=CONTEXT, logits_all=True,
                verbose=False, n_threads=2, seed=0, type_k=0, type_v=0, flash_attn=False)

    def logprobs(ids):
        llm.reset()
        llm.eval(ids)
        return log_softmax(np.array(llm.scores[: len(ids)], dtype=np.float32))

    golden = {"tokens": tokens, "context": CONTEXT, "stride": STRIDE,
              "sliding": sliding(tokens[:LLAMACPP_TOKENS], logprobs)}
    (dest / "ppl_llamacpp.json").write_text(json.dumps(golden))
    print(f"llama.cpp f32: {len(tokens)} tokens, ppl of the first {LLAMACPP_TOKENS} "
          f"{golden['sliding']['ppl']:.4f}", file=sys.stderr)


def small_model(dest):
    """A random 8-layer Llama with an untied head and SmolLM2's tokenizer, saved as an HF float32 dir."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    args = dict(model_type="llama", hidden_size=128, num_hidden_layers=8, intermediate_size=256,
                num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=49152,
                rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="float32")
    mx.random.seed(7)
    model = llama.Model(llama.ModelArgs(**{k: v for k, v in args.items() if k != "torch_dtype"}))
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    mx.save_safetensors(str(dest / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(args, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIXTURES / "model" / "smollm2-f32" / f, dest / f)


def convert_golden(dest):
    import mlx.core as mx
    from mlx_lm.convert import convert

    src = dest / "small-f32"
    small_model(src)
    for name, kwargs in CONVERSIONS.items():
        out = dest / name
        shutil.rmtree(out, ignore_errors=True)
        convert(str(src), mlx_path=str(out), **kwargs)
    w = mx.load(str(src / "model.safetensors"))["model.layers.3.mlp.down_proj.weight"]
    q = {"input": w}
    for bits in (2, 3, 4, 5, 6, 8):
        for group in (32, 64, 128):
            wq, scales, biases = mx.quantize(w, group_size=group, bits=bits)
            q[f"b{bits}_g{group}.weight"], q[f"b{bits}_g{group}.scales"], q[f"b{bits}_g{group}.biases"] = wq, scales, biases
    mx.save_safetensors(str(dest / "mx_quantize.safetensors"), q)


def main():
    dest = out_dir("quant")
    mlxlm_ppl_golden(dest)
    llamacpp_ppl_golden(dest)
    convert_golden(dest)


if __name__ == "__main__":
    main()

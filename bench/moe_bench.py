"""Mixture-of-experts speed, lmlab beside mlx-lm on this machine.

No mixture-of-experts model ships on PyPI, so the model is random: mlx-lm's own
Qwen3-MoE class at a reduced Qwen3-30B-A3B shape (hidden 768, 8 layers, 32
experts of 384, 4 per token, 16/4 heads of 64; a 16k vocabulary so that the
experts, not the output head, are most of a decode step's multiplies), 4-bit group 64 with mlx-lm's
quantize (experts too; the router 8-bit, as mlx-lm's predicate for Qwen3-MoE
has it), saved with the Qwen3 tokenizer from ../shared. Both engines get random
prompt ids and generate greedily with a KV cache; runs alternate (lmlab, mlx-lm,
lmlab, ...) so a shared machine's load falls on both alike. Prints prompt and
generation tok/s (mean ± std) and the lmlab / mlx-lm ratios.

Usage: .deps/py/bin/python bench/moe_bench.py [--runs 3] [--prompt 128] [--gen 32]
"""
import argparse
import json
import lzma
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(model_type="qwen3_moe", hidden_size=768, num_hidden_layers=8, intermediate_size=2048,
            moe_intermediate_size=384, num_attention_heads=16, num_key_value_heads=4, head_dim=64, num_experts=32,
            num_experts_per_tok=4, decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
            rms_norm_eps=1e-6, vocab_size=16384, rope_theta=1000000.0, tie_word_embeddings=True,
            max_position_embeddings=4096)


def make_model(dest: Path):
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen3_moe
    from mlx_lm.utils import quantize_model
    mx.random.seed(0)
    model = qwen3_moe.Model(qwen3_moe.ModelArgs(**ARGS))
    model.sanitize({})
    model, config = quantize_model(model, dict(ARGS), group_size=64, bits=4, quant_predicate=model.quant_predicate)
    dest.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dest / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    shared = ROOT.parent / "shared" / "tokenizers" / "qwen3"
    with lzma.open(shared / "tokenizer.json.xz", "rt", encoding="utf-8") as f:
        (dest / "tokenizer.json").write_text(f.read())
    if (shared / "tokenizer_config.json").exists():
        (dest / "tokenizer_config.json").write_text((shared / "tokenizer_config.json").read_text())
    return model


def mlx_lm_run(model, prompt: int, gen: int, seed: int):
    from mlx_lm.models.cache import make_prompt_cache
    ids = mx.array(np.random.default_rng(seed).integers(0, ARGS["vocab_size"], size=(1, prompt)).astype(np.int32))
    cache = make_prompt_cache(model)
    t0 = time.perf_counter()
    logits = model(ids, cache=cache)
    tok = mx.argmax(logits[:, -1, :], axis=-1, keepdims=True)
    mx.eval(tok)
    t1 = time.perf_counter()
    for _ in range(gen):
        tok = mx.argmax(model(tok, cache=cache)[:, -1, :], axis=-1, keepdims=True)
        mx.eval(tok)
    t2 = time.perf_counter()
    return prompt / (t1 - t0), gen / (t2 - t1)


def lmlab_run(path: Path, prompt: int, gen: int):
    out = subprocess.run([str(ROOT / "build/lmlab"), "bench", "--model", str(path), "-p", str(prompt), "-n", str(gen),
                          "-r", "1", "--warmup", "0", "--json"], capture_output=True, text=True, check=True).stdout
    row = json.loads(out)["results"][0]
    return row["pp"]["mean_tps"], row["tg"]["mean_tps"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qwen3-moe-random-4bit"
        model = make_model(path)
        mlx_lm_run(model, a.prompt, a.gen, 99)  # warm-up
        lmlab_run(path, a.prompt, a.gen)
        res = {"lmlab": ([], []), "mlx-lm": ([], [])}
        for r in range(a.runs):
            for name in ("lmlab", "mlx-lm"):
                pp, tg = lmlab_run(path, a.prompt, a.gen) if name == "lmlab" else mlx_lm_run(model, a.prompt, a.gen, r)
                res[name][0].append(pp)
                res[name][1].append(tg)
    fmt = lambda v: f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}"
    print(f"| engine | pp{a.prompt} tok/s | tg{a.gen} tok/s |\n|---|---:|---:|")
    for name, (pp, tg) in res.items():
        print(f"| {name} | {fmt(pp)} | {fmt(tg)} |")
    ratio = lambda i: statistics.mean(res["lmlab"][i]) / statistics.mean(res["mlx-lm"][i])
    print(f"| lmlab / mlx-lm | {ratio(0):.2f}x | {ratio(1):.2f}x |")
    print(f"({a.runs} runs each, alternating; mlx {mx.__version__}; {sys.platform})")


if __name__ == "__main__":
    main()

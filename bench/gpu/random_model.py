#!/usr/bin/env python3
"""Random-weight Llama-shaped MLX model directories for GPU speed runs.

Needs only numpy and safetensors (both on the GPU machine), so nothing else is
carried there. Every linear layer (and the embedding) is 4-bit affine with
random levels, scales 0.02/7.5 (±0.01 jitter) and biases -8 * scale, i.e.
weights roughly uniform in ±0.02; norms are 1. The tokenizer is the real Llama 3
one (a tokenizer.json and tokenizer_config.json passed in).

  random_model.py OUTDIR SHAPE TOKENIZER_DIR     SHAPE: llama8b | llama3b | llama1b
Prints the bytes a decode step reads (weights of every layer and the head).
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SHAPES = {
    # Llama 3 8B, 3.2 3B and 3.2 1B.
    "llama8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    "llama3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                    num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "llama1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
}
GROUP, BITS, VOCAB = 64, 4, 128256


def quantized(rng, n, k):
    w = rng.integers(0, 2**32, size=(n, k * BITS // 32), dtype=np.uint32)
    scales = (0.02 / 7.5 + rng.uniform(-0.01, 0.01, size=(n, k // GROUP)) * 0.02 / 7.5).astype(np.float16)
    biases = (-8.0 * scales.astype(np.float32)).astype(np.float16)
    return w, scales, biases


def main(out, shape, tok_dir):
    s = SHAPES[shape]
    D, I, Hq, Hk, Dh = (s["hidden_size"], s["intermediate_size"], s["num_attention_heads"],
                        s["num_key_value_heads"], s["head_dim"])
    rng = np.random.default_rng(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors, step_bytes = {}, 0

    def linear(name, n, k, per_step=True):
        nonlocal step_bytes
        w, sc, b = quantized(rng, n, k)
        tensors[name + ".weight"], tensors[name + ".scales"], tensors[name + ".biases"] = w, sc, b
        if per_step:
            step_bytes += w.nbytes + sc.nbytes + b.nbytes

    linear("model.embed_tokens", VOCAB, D, per_step=s["tie_word_embeddings"])
    tensors["model.norm.weight"] = np.ones(D, np.float16)
    if not s["tie_word_embeddings"]:
        linear("lm_head", VOCAB, D)
    for l in range(s["num_hidden_layers"]):
        p = f"model.layers.{l}."
        tensors[p + "input_layernorm.weight"] = np.ones(D, np.float16)
        tensors[p + "post_attention_layernorm.weight"] = np.ones(D, np.float16)
        linear(p + "self_attn.q_proj", Hq * Dh, D)
        linear(p + "self_attn.k_proj", Hk * Dh, D)
        linear(p + "self_attn.v_proj", Hk * Dh, D)
        linear(p + "self_attn.o_proj", D, Hq * Dh)
        linear(p + "mlp.gate_proj", I, D)
        linear(p + "mlp.up_proj", I, D)
        linear(p + "mlp.down_proj", D, I)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "mlx"})
    config = dict(model_type="llama", architectures=["LlamaForCausalLM"], torch_dtype="float16",
                  vocab_size=VOCAB, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
                  bos_token_id=128000, eos_token_id=128001, attention_bias=False, mlp_bias=False,
                  quantization=dict(group_size=GROUP, bits=BITS, mode="affine"), **s)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tok_dir) / f, out / f)
    print(json.dumps(dict(model=shape, dir=str(out), step_bytes=step_bytes)))


if __name__ == "__main__":
    main(*sys.argv[1:4])

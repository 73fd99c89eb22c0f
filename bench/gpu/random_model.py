#!/usr/bin/env python3
"""Random-weight Llama-shaped MLX model directories for GPU speed runs.

Needs only numpy and safetensors (both on the GPU machine), so nothing else is
carried there. Every linear layer (and the embedding) is 4-bit affine with
random levels, scales 0.02/7.5 (±0.01 jitter) and biases -8 * scale, i.e.
weights roughly uniform in ±0.02; norms are 1. The tokenizer is the real Llama 3
one (a tokenizer.json and tokenizer_config.json passed in).

  random_model.py OUTDIR SHAPE TOKENIZER_DIR [BITS [DTYPE]]
SHAPE: llama8b | llama3b | llama1b; BITS 4 (default) or 0 for unquantized
weights N(0, 0.02); DTYPE float16 (default) or bfloat16, the config's
torch_dtype and the type of scales, biases, norms and float weights.
Prints the bytes a decode step reads (weights of every layer and the head).

  random_model.py OUT.gguf SHAPE TOKENIZER_DIR
writes the same shape as a GGUF whose every matrix is Q4_0 (random levels,
block scales 0.02/7.5), for llama.cpp's llama-bench; it needs the `gguf`
package (gguf-py from llama.cpp's source tree on PYTHONPATH will do).
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
    scales = (0.02 / 7.5 + rng.uniform(-0.01, 0.01, size=(n, k // GROUP)) * 0.02 / 7.5).astype(np.float32)
    return w, scales, -8.0 * scales


def to_dtype(a, dtype):
    """float32 array -> the safetensors array of dtype (bfloat16 as its top 16 bits, rounded)."""
    if dtype == "float16":
        return a.astype(np.float16)
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def save_bf16(tensors, path):
    """safetensors with the uint16 arrays marked BF16 (numpy has no bfloat16)."""
    header, blobs, off = {"__metadata__": {"format": "mlx"}}, [], 0
    for name, a in tensors.items():
        kind = {np.dtype(np.uint32): "U32", np.dtype(np.uint16): "BF16"}[a.dtype]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h)
        for b in blobs:
            f.write(b)


def main(out, shape, tok_dir, bits="4", dtype="float16"):
    bits = int(bits)
    if bits not in (0, 4) or dtype not in ("float16", "bfloat16"):
        sys.exit(f"random_model.py: BITS must be 0 or 4 and DTYPE float16 or bfloat16, not {bits} {dtype}")
    s = SHAPES[shape]
    D, I, Hq, Hk, Dh = (s["hidden_size"], s["intermediate_size"], s["num_attention_heads"],
                        s["num_key_value_heads"], s["head_dim"])
    rng = np.random.default_rng(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors, step_bytes = {}, 0

    def linear(name, n, k, per_step=True):
        nonlocal step_bytes
        if bits:
            w, sc, b = quantized(rng, n, k)
            parts = {".weight": w, ".scales": to_dtype(sc, dtype), ".biases": to_dtype(b, dtype)}
        else:
            parts = {".weight": to_dtype(0.02 * rng.standard_normal((n, k), dtype=np.float32), dtype)}
        for suffix, a in parts.items():
            tensors[name + suffix] = a
            if per_step:
                step_bytes += a.nbytes

    linear("model.embed_tokens", VOCAB, D, per_step=s["tie_word_embeddings"])
    tensors["model.norm.weight"] = to_dtype(np.ones(D, np.float32), dtype)
    if not s["tie_word_embeddings"]:
        linear("lm_head", VOCAB, D)
    for l in range(s["num_hidden_layers"]):
        p = f"model.layers.{l}."
        tensors[p + "input_layernorm.weight"] = to_dtype(np.ones(D, np.float32), dtype)
        tensors[p + "post_attention_layernorm.weight"] = to_dtype(np.ones(D, np.float32), dtype)
        linear(p + "self_attn.q_proj", Hq * Dh, D)
        linear(p + "self_attn.k_proj", Hk * Dh, D)
        linear(p + "self_attn.v_proj", Hk * Dh, D)
        linear(p + "self_attn.o_proj", D, Hq * Dh)
        linear(p + "mlp.gate_proj", I, D)
        linear(p + "mlp.up_proj", I, D)
        linear(p + "mlp.down_proj", D, I)
    if dtype == "float16":
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "mlx"})
    else:
        save_bf16(tensors, out / "model.safetensors")
    config = dict(model_type="llama", architectures=["LlamaForCausalLM"], torch_dtype=dtype,
                  vocab_size=VOCAB, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
                  bos_token_id=128000, eos_token_id=128001, attention_bias=False, mlp_bias=False, **s)
    if bits:
        config["quantization"] = dict(group_size=GROUP, bits=BITS, mode="affine")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tok_dir) / f, out / f)
    print(json.dumps(dict(model=shape, dir=str(out), step_bytes=step_bytes)))


def main_gguf(out, shape, tok_dir):
    import gguf

    s = SHAPES[shape]
    D, I, Hq, Hk, Dh, L = (s["hidden_size"], s["intermediate_size"], s["num_attention_heads"],
                           s["num_key_value_heads"], s["head_dim"], s["num_hidden_layers"])
    tok = json.loads((Path(tok_dir) / "tokenizer.json").read_text())
    tokens = [f"<unused_{i}>" for i in range(VOCAB)]
    types = [gguf.TokenType.NORMAL] * VOCAB
    for text, i in tok["model"]["vocab"].items():
        tokens[i] = text
    for t in tok["added_tokens"]:
        tokens[t["id"]], types[t["id"]] = t["content"], gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w = gguf.GGUFWriter(out, "llama")
    w.add_name(f"random {shape} Q4_0")
    w.add_context_length(8192)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(I)
    w.add_head_count(Hq)
    w.add_head_count_kv(Hk)
    w.add_key_length(Dh)
    w.add_value_length(Dh)
    w.add_rope_dimension_count(Dh)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128001)
    rng = np.random.default_rng(0)
    scale = np.frombuffer(np.float16(0.02 / 7.5).tobytes(), np.uint8)
    step_bytes = 0

    def q4_0(name, n, k, per_step=True):
        nonlocal step_bytes
        blocks = rng.integers(0, 256, size=(n, k // 32, 18), dtype=np.uint8)  # f16 scale, 16 bytes of levels
        blocks[:, :, :2] = scale
        w.add_tensor(name, blocks.reshape(n, -1), raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        step_bytes += blocks.nbytes if per_step else 0

    def ones(name, n):
        w.add_tensor(name, np.ones(n, np.float32))

    q4_0("token_embd.weight", VOCAB, D, per_step=s["tie_word_embeddings"])
    ones("output_norm.weight", D)
    if not s["tie_word_embeddings"]:
        q4_0("output.weight", VOCAB, D)
    for l in range(L):
        ones(f"blk.{l}.attn_norm.weight", D)
        ones(f"blk.{l}.ffn_norm.weight", D)
        q4_0(f"blk.{l}.attn_q.weight", Hq * Dh, D)
        q4_0(f"blk.{l}.attn_k.weight", Hk * Dh, D)
        q4_0(f"blk.{l}.attn_v.weight", Hk * Dh, D)
        q4_0(f"blk.{l}.attn_output.weight", D, Hq * Dh)
        q4_0(f"blk.{l}.ffn_gate.weight", I, D)
        q4_0(f"blk.{l}.ffn_up.weight", I, D)
        q4_0(f"blk.{l}.ffn_down.weight", D, I)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(json.dumps(dict(model=shape, gguf=out, step_bytes=step_bytes)))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    if sys.argv[1].endswith(".gguf"):
        main_gguf(*sys.argv[1:4])
    else:
        main(*sys.argv[1:6])

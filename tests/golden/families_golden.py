"""Tiny random-weight checkpoints of the families added after the first ones
(those live in model_golden.py), built with mlx-lm's own model classes, with
their float32 logits on random ids, for tests/models/families_test.cpp.

Writes $LMLAB_FIXTURES/families/NAME/{config.json, model.safetensors,
golden.safetensors} for NAME in TINY, float, `_q4` (4-bit group 32 with
8-bit down projections) and `_q5` (5-bit group 32, as most of a Q4_K_M Gemma's
tensors load, with 8-bit down projections). Mixture-of-experts families are
saved as mlx-lm stores them (experts stacked in switch_mlp) and, as NAME_hf
(float and _q4), with the experts split per expert the way Hugging Face
checkpoints (and older quantized conversions) store them, with the same golden
logits. Seconds on 2 cores.
"""
import importlib
import json
import shutil

import numpy as np

from _common import out_dir

# Gemma 3: hidden 96 makes mlx-lm's bfloat16 √hidden (9.8125) differ from the
# float one (9.798); a window of 4 and a pattern of 2 put sliding and global
# layers inside 11 tokens; linear scaling on the global rotation only;
# query_pre_attn_scalar ≠ head_dim; the head tied to the embedding.
TINY = {
    "gemma3_text": ("gemma3_text", dict(model_type="gemma3_text", hidden_size=96, num_hidden_layers=4,
                                        intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                                        head_dim=32, rms_norm_eps=1e-6, vocab_size=160, rope_theta=1000000.0,
                                        rope_local_base_freq=10000.0, query_pre_attn_scalar=48,
                                        sliding_window=4, sliding_window_pattern=2,
                                        max_position_embeddings=512,
                                        rope_scaling={"rope_type": "linear", "factor": 2.0}), True),
    # Phi-3: fused qkv_proj and gate_up_proj, rotary on half of each head.
    "phi3": ("phi3", dict(model_type="phi3", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=160,
                          rope_theta=10000.0, partial_rotary_factor=0.5, max_position_embeddings=512,
                          tie_word_embeddings=False), False),
    # Mixtral: 4 experts, 2 per token (2 x 11 x 2 = 44 routed rows: mlx-lm's
    # unsorted gather); Hugging Face's per-expert names w1/w3/w2 in mixtral_hf.
    "mixtral": ("mixtral", dict(model_type="mixtral", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
                                num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                num_experts_per_tok=2, rms_norm_eps=1e-5, vocab_size=160, rope_theta=1000000.0,
                                tie_word_embeddings=False), False),
    # Qwen3-MoE: 8 experts, 3 per token (66 routed rows: mlx-lm sorts them by
    # expert), renormalised top-k; layer 1 dense (mlp_only_layers) with its own
    # intermediate size; the head tied to the embedding.
    "qwen3_moe": ("qwen3_moe", dict(model_type="qwen3_moe", hidden_size=64, num_hidden_layers=3,
                                    intermediate_size=128, moe_intermediate_size=64, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=32, num_experts=8, num_experts_per_tok=3,
                                    decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=True,
                                    rms_norm_eps=1e-6, vocab_size=160, rope_theta=1000000.0,
                                    tie_word_embeddings=True, max_position_embeddings=512), True),
}
# Seeds fixed per family, so adding one leaves the others' checkpoints as they were.
SEEDS = {"gemma3_text": 0, "phi3": 1, "mixtral": 2, "qwen3_moe": 3}
# Hugging Face's per-expert module names: (stacked switch_mlp name, per-expert name).
HF_EXPERTS = {
    "mixtral": ("block_sparse_moe", [("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3")]),
    "qwen3_moe": ("mlp", [(n, n) for n in ("gate_proj", "up_proj", "down_proj")]),
}


def split_experts(name, src, dest):
    """src's checkpoint with every stacked expert tensor split per expert (HF layout)."""
    import mlx.core as mx
    block, names = HF_EXPERTS[name]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    weights = mx.load(str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    quant = config.get("quantization", {})
    out = {}
    for key, value in weights.items():
        parts = key.split(".")
        if f"{block}.switch_mlp" not in key:
            out[key] = value
            continue
        stacked = ".".join(parts[:-1])  # model.layers.N.<block>.switch_mlp.<proj>
        expert_name = dict(names)[parts[-2]]
        for e in range(value.shape[0]):
            module = stacked.replace("switch_mlp." + parts[-2], f"experts.{e}.{expert_name}")
            out[f"{module}.{parts[-1]}"] = value[e]
            if stacked in quant:
                for c in (config.get("quantization"), config.get("quantization_config")):
                    if c is not None:
                        c[module] = quant[stacked]
    for c in (config.get("quantization"), config.get("quantization_config")):
        if c is not None:
            for k in [k for k in c if "switch_mlp" in k]:
                del c[k]
    mx.save_safetensors(str(dest / "model.safetensors"), out, metadata={"format": "mlx"})
    (dest / "config.json").write_text(json.dumps(config, indent=2))


def build(name, module, args, tied, bits, seed, dest):
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.utils import quantize_model

    mx.random.seed(seed)
    mod = importlib.import_module(f"mlx_lm.models.{module}")
    model = mod.Model(mod.ModelArgs(**args))
    if tied:
        model.sanitize({})  # no lm_head: the model reads the embedding as its head
    # Random norms too, so a wrong norm offset shows.
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.5 + 1.0 if p.ndim == 1 else p,
                          model.parameters()))
    config = dict(args)
    if bits:
        def pred(path, m):
            if "down_proj" in path:
                return {"group_size": 32, "bits": 8}
            return hasattr(m, "to_quantized") and m.weight.shape[-1] % 32 == 0
        model, config = quantize_model(model, config, group_size=32, bits=bits, quant_predicate=pred)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    mx.save_safetensors(str(dest / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)
    ids = mx.array(rng.integers(0, args["vocab_size"], size=(2, 11)).astype(np.int32))
    golden = {"ids": ids, "logits": model(ids).astype(mx.float32)}
    if bits and name in HF_EXPERTS:
        # In half precision a router's near-tie may pick another expert than in
        # float32, a discrete change: the half-precision test compares with
        # mlx-lm's own float16 logits (MLX's CPU gather_mm takes float32 only,
        # so only the quantized experts run in float16 here).
        model.set_dtype(mx.float16)
        golden["logits_half"] = model(ids).astype(mx.float32)
    mx.save_safetensors(str(dest / "golden.safetensors"), golden)


def main():
    root = out_dir("families")
    for name, (module, args, tied) in sorted(TINY.items()):
        for bits in (0, 4, 5):
            build(name, module, args, tied, bits, SEEDS[name], root / (name + (f"_q{bits}" if bits else "")))
        if name in HF_EXPERTS:
            split_experts(name, root / name, root / (name + "_hf"))
            split_experts(name, root / (name + "_q4"), root / (name + "_hf_q4"))


if __name__ == "__main__":
    main()

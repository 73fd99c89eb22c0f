"""Tiny random-weight checkpoints of the families added after the first ones
(those live in model_golden.py), built with mlx-lm's own model classes, with
their float32 logits on random ids, for tests/models/families_test.cpp.

Writes $LMLAB_FIXTURES/families/NAME/{config.json, model.safetensors,
golden.safetensors} for NAME in TINY, float, `_q4` (4-bit group 32 with
8-bit down projections) and `_q5` (5-bit group 32, as most of a Q4_K_M Gemma's
tensors load, with 8-bit down projections). Seconds on 2 cores.
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
}


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
    logits = model(ids).astype(mx.float32)
    mx.save_safetensors(str(dest / "golden.safetensors"), {"ids": ids, "logits": logits})


def main():
    root = out_dir("families")
    for i, (name, (module, args, tied)) in enumerate(sorted(TINY.items())):
        for bits in (0, 4, 5):
            build(name, module, args, tied, bits, i, root / (name + (f"_q{bits}" if bits else "")))


if __name__ == "__main__":
    main()

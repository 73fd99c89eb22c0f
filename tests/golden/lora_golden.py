"""Golden outputs of mlx-lm's fine-tuning, for tests/train/*_test.cpp.

1. Datasets: token ids and prompt offsets mlx-lm's tuner/datasets.py makes from
   prompt/completion (Super Bowl), chat (written here: system prompts, several
   turns) and text (WikiSQL) records, with the default model's tokenizer as
   transformers loads it (tokenizer files made from the GGUF vocabulary with the
   `tokenizers` package, as model_golden.py does).
2. Optimizers and schedules: a few steps of mlx.optimizers Adam / AdamW / SGD
   (with and without bias correction, momentum, weight decay) on fixed
   gradients, and every mlx-lm learning-rate schedule over 30 steps.
3. A short training run of mlx_lm.lora's own trainer (tuner/trainer.py: train,
   iterate_batches, default_loss) on a tiny 4-bit checkpoint with the default
   model's layout (llama, tied embeddings, grouped-query attention) and a
   512-token cut of its tokenizer: per-iteration losses, validation losses and
   the final adapters, for lmlab's trainer to reproduce.
"""
import json
import shutil
import sys

import numpy as np

from _common import MODEL, SHARED, out_dir

CHAT_RECORDS = [
    {"messages": [{"role": "user", "content": "Who won Super Bowl LIX?"},
                  {"role": "assistant", "content": "The Philadelphia Eagles, 40-22."}]},
    {"messages": [{"role": "system", "content": "You answer in one word."},
                  {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Count to three."},
                  {"role": "assistant", "content": "One, two, three."}]},
    {"messages": [{"role": "user", "content": "Ünïcödé ✓ and emoji 🏈?"},
                  {"role": "assistant", "content": "Yes: 🏈 ✓."}]},
]


def write_tokenizer(dest, vocab_size=None):
    """tokenizer.json and tokenizer_config.json of the default GGUF (byte-level
    BPE, digits split, its special tokens and chat template). With vocab_size,
    only the first ids and the merges that make them: a smaller, still valid BPE."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(str(MODEL))
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    if vocab_size:
        toks, types = toks[:vocab_size], types[:vocab_size]
    vocab = {t: i for i, t in enumerate(toks)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    pairs = [p for p in pairs if p[0] + p[1] in vocab and p[0] in vocab and p[1] in vocab]
    tk = Tokenizer(models.BPE(vocab, pairs))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    dest.mkdir(parents=True, exist_ok=True)
    tk.save(str(dest / "tokenizer.json"))
    template = bytes(f["tokenizer.chat_template"].parts[f["tokenizer.chat_template"].data[0]]).decode("utf-8")
    # PreTrainedTokenizerFast: transformers 5 builds "GPT2Tokenizer" (the class
    # SmolLM2's own config names) as plain GPT-2 byte-level BPE and drops the
    # tokenizer.json digit splitting ("\n\n1" gives Ċ Ċ 1, not ĊĊ 1); the fast
    # class runs tokenizer.json as HF `tokenizers`, llama.cpp and lmlab do.
    tcfg = {"bos_token": toks[1], "eos_token": toks[2], "unk_token": toks[0], "pad_token": toks[2],
            "chat_template": template, "add_bos_token": False, "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 8192}
    (dest / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2))


def dataset_golden(dest):
    from transformers import AutoTokenizer
    from mlx_lm.tuner.datasets import create_dataset
    import types

    write_tokenizer(dest / "tokenizer")
    tok = AutoTokenizer.from_pretrained(str(dest / "tokenizer"))
    chat_file = dest / "chat.jsonl"
    chat_file.write_text("".join(json.dumps(r) + "\n" for r in CHAT_RECORDS))
    sources = [
        ("completions", SHARED / "data" / "superbowl" / "valid.jsonl", 40, True),
        ("completions", SHARED / "data" / "superbowl" / "valid.jsonl", 5, False),
        ("chat", chat_file, len(CHAT_RECORDS), True),
        ("chat", chat_file, len(CHAT_RECORDS), False),
        ("text", SHARED / "data" / "wikisql" / "valid.jsonl", 40, False),
    ]
    cases = []
    for fmt, path, n, mask in sources:
        records = [json.loads(l) for l in path.read_text().splitlines()[:n]]
        ds = create_dataset(records, tok, types.SimpleNamespace(mask_prompt=mask))
        out = []
        for r in records:
            tokens, offset = ds.process(r)
            out.append({"tokens": [int(t) for t in tokens], "offset": int(offset)})
        cases.append({"format": fmt, "file": str(path), "count": n, "mask_prompt": mask, "records": out})
    (dest / "datasets.json").write_text(json.dumps({"cases": cases}))


def optimizer_golden(dest):
    """mlx.optimizers on fixed gradients: the parameters after each of 5 steps."""
    import mlx.core as mx
    import mlx.optimizers as optim

    mx.random.seed(3)
    p0 = {"a": mx.random.normal((4, 3)), "b": mx.random.normal((5,))}
    grads = [{"a": mx.random.normal((4, 3)), "b": mx.random.normal((5,))} for _ in range(5)]
    sched = optim.cosine_decay(1e-2, 4, 1e-3)
    cases = {
        "adam": (optim.Adam, dict(learning_rate=1e-2)),
        "adam_bc": (optim.Adam, dict(learning_rate=1e-2, betas=[0.8, 0.95], eps=1e-6, bias_correction=True)),
        "adamw": (optim.AdamW, dict(learning_rate=sched, weight_decay=0.1)),
        "sgd": (optim.SGD, dict(learning_rate=0.1)),
        "sgd_momentum": (optim.SGD, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, dampening=0.1)),
        "sgd_nesterov": (optim.SGD, dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    }
    out = {"p0": {k: np.array(v) for k, v in p0.items()}, "grads": grads}
    tensors = {f"p0.{k}": v for k, v in p0.items()}
    for i, g in enumerate(grads):
        for k, v in g.items():
            tensors[f"grad{i}.{k}"] = v
    for name, (cls, kw) in cases.items():
        opt = cls(**kw)
        params = dict(p0)
        for i, g in enumerate(grads):
            params = opt.apply_gradients(g, params)
            mx.eval(params)
            for k, v in params.items():
                tensors[f"{name}.{i}.{k}"] = v
            tensors[f"{name}.{i}.lr"] = mx.array(opt.learning_rate)
    mx.save_safetensors(str(dest / "optimizers.safetensors"), tensors)
    # Schedules as mlx-lm builds them (tuner/utils.py build_schedule).
    from mlx_lm.tuner.utils import build_schedule
    schedules = {
        "cosine_warmup": {"name": "cosine_decay", "warmup": 5, "warmup_init": 1e-6, "arguments": [1e-3, 20, 1e-5]},
        "cosine": {"name": "cosine_decay", "arguments": [1e-3, 20]},
        "linear": {"name": "linear_schedule", "arguments": [1e-3, 1e-4, 12], "warmup": 3},
        "exponential": {"name": "exponential_decay", "arguments": [1e-3, 0.9]},
        "step": {"name": "step_decay", "arguments": [1e-3, 0.5, 7]},
    }
    values = {}
    for name, cfg in schedules.items():
        fn = build_schedule(cfg)
        values[name] = {"config": cfg, "lr": [float(fn(mx.array(i, mx.uint64))) for i in range(30)]}
    (dest / "schedules.json").write_text(json.dumps(values))


# The parity checkpoint: the default model's layout (llama, tied embeddings,
# grouped-query attention, its rope base and norm epsilon) at a tiny size, with
# random weights, 4-bit group-32 projections and a 512-id cut of its tokenizer.
PARITY_MODEL = dict(model_type="llama", hidden_size=96, num_hidden_layers=2, intermediate_size=256,
                    num_attention_heads=3, num_key_value_heads=1, rms_norm_eps=1e-5, vocab_size=512,
                    rope_theta=100000.0, tie_word_embeddings=True, max_position_embeddings=2048)

# The mixture-of-experts parity checkpoint: Qwen3-MoE at a tiny size (4 experts,
# 2 per token, every layer sparse), 4-bit group-32 experts and projections and
# mlx-lm's 8-bit group-64 router, the same 512-id tokenizer.
PARITY_MOE_MODEL = dict(model_type="qwen3_moe", hidden_size=128, num_hidden_layers=2, intermediate_size=256,
                        moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1,
                        mlp_only_layers=[], norm_topk_prob=True, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=32, rms_norm_eps=1e-6, vocab_size=512, rope_theta=100000.0,
                        tie_word_embeddings=False, max_position_embeddings=2048)

PARITY_RUNS = {
    # name: config overrides; each trains mlx_lm.lora's own train() from the same start.
    "lora": dict(fine_tune_type="lora", iters=60, batch_size=4, learning_rate=2e-4, steps_per_eval=25,
                 val_batches=2, lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0},
                 lr_schedule={"name": "cosine_decay", "warmup": 10, "warmup_init": 1e-5,
                              "arguments": [2e-4, 50, 1e-5]}),
    "dora": dict(fine_tune_type="dora", iters=20, batch_size=2, learning_rate=2e-3, steps_per_eval=10,
                 val_batches=3, optimizer="adamw", optimizer_config={"adamw": {"weight_decay": 0.05}},
                 grad_accumulation_steps=2, grad_checkpoint=True,
                 lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0,
                                  "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]}),
    "full": dict(model="model_f32", fine_tune_type="full", num_layers=1, iters=16, batch_size=4, learning_rate=5e-2,
                 steps_per_eval=10, val_batches=2, optimizer="sgd",
                 optimizer_config={"sgd": {"momentum": 0.9}}),
    # LoRA with mlx-lm's default keys on a mixture of experts: the stacked
    # experts (LoRASwitchLinear), the router and the attention projections.
    "moe": dict(model="model_moe", fine_tune_type="lora", iters=20, batch_size=4, learning_rate=5e-4,
                steps_per_eval=10, val_batches=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}),
}


def parity_model(dest, float_dest):
    """The parity checkpoint, 4-bit (QLoRA) and float (full fine-tuning: mlx-lm
    cannot differentiate packed weights)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models import llama
    from mlx_lm.utils import quantize_model

    mx.random.seed(42)
    model = llama.Model(llama.ModelArgs(**PARITY_MODEL))
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.1 + 1.0 if p.ndim == 1 else p,
                          model.parameters()))
    for d, quantized in ((float_dest, False), (dest, True)):
        shutil.rmtree(d, ignore_errors=True)
        write_tokenizer(d, vocab_size=PARITY_MODEL["vocab_size"])
        config = dict(PARITY_MODEL)
        if quantized:
            model, config = quantize_model(model, config, group_size=32, bits=4)
        mx.save_safetensors(str(d / "model.safetensors"), dict(tree_flatten(model.parameters())),
                            metadata={"format": "mlx"})
        (d / "config.json").write_text(json.dumps(config, indent=2))


def parity_moe_model(dest):
    """The mixture-of-experts parity checkpoint, quantized as mlx-lm quantizes Qwen3-MoE."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models import qwen3_moe
    from mlx_lm.utils import quantize_model

    mx.random.seed(43)
    model = qwen3_moe.Model(qwen3_moe.ModelArgs(**PARITY_MOE_MODEL))
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.1 + 1.0 if p.ndim == 1 else p,
                          model.parameters()))
    shutil.rmtree(dest, ignore_errors=True)
    write_tokenizer(dest, vocab_size=PARITY_MOE_MODEL["vocab_size"])
    model, config = quantize_model(model, dict(PARITY_MOE_MODEL), group_size=32, bits=4)
    mx.save_safetensors(str(dest / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    (dest / "config.json").write_text(json.dumps(config, indent=2))


def parity_data(dest, n_train=64, n_valid=16):
    """The first Super Bowl training records and held-out validation ones."""
    sb = SHARED / "data" / "superbowl"
    train = sb.joinpath("train.jsonl").read_text().splitlines()
    seen = set(train)
    valid = [l for l in sb.joinpath("valid.jsonl").read_text().splitlines() if l not in seen]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "train.jsonl").write_text("\n".join(train[:n_train]) + "\n")
    (dest / "valid.jsonl").write_text("\n".join(valid[:n_valid]) + "\n")


def mlx_lm_train(config):
    """mlx_lm.lora's run() with CONFIG_DEFAULTS updated by config (numpy
    seeded, model and data loaded, then train_model): the per-iteration
    [iteration, train loss, learning rate] and [iteration, validation loss]
    it reports, and the full config it ran."""
    import types
    from mlx_lm import load
    from mlx_lm.lora import CONFIG_DEFAULTS, train_model
    from mlx_lm.tuner.datasets import load_dataset

    args = dict(CONFIG_DEFAULTS)
    args.update(config)
    args = types.SimpleNamespace(**args)

    class Record:
        def __init__(self):
            self.train, self.val = [], []

        def on_train_loss_report(self, info):
            self.train.append([info["iteration"], info["train_loss"], info["learning_rate"]])

        def on_val_loss_report(self, info):
            self.val.append([info["iteration"] + 1, info["val_loss"]])

    rec = Record()
    np.random.seed(args.seed)
    model, tokenizer = load(args.model)
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    train_model(args, model, train_set, valid_set, rec)
    return rec.train, rec.val, {k: v for k, v in vars(args).items() if k != "config"}


def parity_golden(dest):
    parity_model(dest / "model", dest / "model_f32")
    parity_moe_model(dest / "model_moe")
    parity_data(dest / "data")
    results = {}
    for name, overrides in PARITY_RUNS.items():
        config = dict(data=str(dest / "data"), train=True, seed=7, num_layers=2, steps_per_report=1,
                      save_every=1000, mask_prompt=True, max_seq_length=128,
                      adapter_path=str(dest / ("adapters_" + name)))
        config.update(overrides)
        config["model"] = str(dest / overrides.get("model", "model"))
        train, val, ran = mlx_lm_train(config)
        results[name] = {"config": ran, "train": train, "val": val}
        print(f"parity {name}: loss {train[0][1]:.4f} -> {train[-1][1]:.4f}", file=sys.stderr)
    (dest / "parity.json").write_text(json.dumps(results, default=str))


def main():
    dest = out_dir("lora")
    dataset_golden(dest)
    optimizer_golden(dest)
    parity_golden(dest)


if __name__ == "__main__":
    main()

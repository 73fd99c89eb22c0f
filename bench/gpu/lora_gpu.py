#!/usr/bin/env python3
"""LoRA training speed on a GPU: the data lmlab trains on, and PyTorch + PEFT beside it.

Runs on the GPU machine (its own python3 with torch, transformers and peft);
scripts/gpu-check.sh's `lora` part calls it around `lmlab lora --device gpu`.

  lora_gpu.py data OUTDIR TOKENIZER_DIR
      OUTDIR/train.jsonl (64 records) and valid.jsonl (8): text records that
      are exactly 512 tokens once tokenized with the Llama 3 tokenizer and the
      end-of-sequence token appended (as lmlab's and mlx-lm's text format do),
      so a batch of 4 is 2,048 tokens with no padding.
  lora_gpu.py mlx MODEL_DIR DATA_DIR [grad-checkpoint]
      mlx_lm.lora's own trainer (lora.py's train_model, as tests/golden/
      lora_golden.py drives it) with the configuration `lmlab lora` gets in
      scripts/gpu-check.sh: rank 16, scale 20, the seven projections of every
      layer, batch 4, Adam at 1e-5, 40 iterations reported every 10. Prints
      one JSON line: tokens/s over iterations 11-40 and peak memory.
  lora_gpu.py peft SHAPE [compile]
      PyTorch + PEFT on a random-weight Llama of SHAPE (llama1b | llama8b):
      bfloat16 base, LoRA rank 16, alpha 320 (PEFT's scaling alpha / r = 20,
      lmlab's --lora-scale 20), no dropout, on q, k, v, o, gate, up and down of
      every layer; batches of 4 random 512-token sequences; Adam at 1e-5;
      5 warm-up then 30 timed steps. Prints one JSON line: tokens/s (4 x 512
      per step) and peak allocated memory.
"""
import json
import sys
import time
from pathlib import Path

SHAPES = {
    "llama1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "llama8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}
KEYS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEQ, BATCH, WARMUP, TIMED = 512, 4, 5, 30


def make_data(out, tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    words = [" the", " of", " and", " to", " in", " a", " is", " that", " for", " it"]

    def text(n, shift):
        return "The" + "".join(words[(i + shift) % len(words)] for i in range(n))

    def length(t):
        ids = tok.encode(t)
        return len(ids) + (ids[-1] != tok.eos_token_id)

    n = SEQ
    for _ in range(8):  # the word count that gives SEQ tokens
        got = length(text(n, 0))
        if got == SEQ:
            break
        n += SEQ - got
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = set()
    for split, count in (("train", 64), ("valid", 8)):
        with open(out / f"{split}.jsonl", "w") as f:
            for r in range(count):
                t = text(n, r)
                lengths.add(length(t))
                f.write(json.dumps({"text": t}) + "\n")
    if lengths != {SEQ}:
        sys.exit(f"lora_gpu.py data: records are {sorted(lengths)} tokens, not {SEQ}")
    print(json.dumps(dict(data=str(out), tokens_per_record=SEQ, words=n)))


def mlx_run(model_dir, data_dir, checkpoint):
    import types

    import mlx.core as mx
    import mlx_lm
    import numpy as np
    from mlx_lm import load
    from mlx_lm.lora import CONFIG_DEFAULTS, train_model
    from mlx_lm.tuner.datasets import load_dataset

    args = dict(CONFIG_DEFAULTS)
    args.update(model=model_dir, data=data_dir, train=True, fine_tune_type="lora", num_layers=-1, batch_size=BATCH,
                iters=40, learning_rate=1e-5, steps_per_report=10, steps_per_eval=1000, val_batches=1,
                save_every=1000, adapter_path="/tmp/ad-mlx", seed=0, grad_checkpoint=checkpoint,
                lora_parameters={"rank": 16, "scale": 20.0, "dropout": 0.0,
                                 "keys": ["self_attn." + k for k in KEYS[:4]] + ["mlp." + k for k in KEYS[4:]]})
    args = types.SimpleNamespace(**args)
    reports = []

    class Record:
        def on_train_loss_report(self, info):
            reports.append(info)

        def on_val_loss_report(self, info):
            pass

    np.random.seed(args.seed)
    t0 = time.perf_counter()
    model, tokenizer = load(args.model)
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    train_model(args, model, train_set, valid_set, Record())
    timed = [r for r in reports if r["iteration"] > 10]
    seconds = sum(10 / r["iterations_per_second"] for r in timed)
    tokens = sum(10 * r["tokens_per_second"] / r["iterations_per_second"] for r in timed)
    print(json.dumps(dict(stack="mlx_lm.lora", mlx=mx.__version__, mlx_lm=mlx_lm.__version__, model=model_dir,
                          grad_checkpoint=checkpoint, tokens_per_sec=round(tokens / seconds, 1),
                          first_report_it_s=round(reports[0]["iterations_per_second"], 3),
                          peak_gb=round(max(r["peak_memory"] for r in reports), 3),
                          losses=[round(r["train_loss"], 4) for r in reports],
                          wall_s=round(time.perf_counter() - t0, 1))), flush=True)


def peft_run(shape, compiled):
    import peft
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = "cuda"
    cfg = LlamaConfig(vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5,
                      bos_token_id=128000, eos_token_id=128001, attention_bias=False, mlp_bias=False,
                      use_cache=False, **SHAPES[shape])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=320, lora_dropout=0.0, target_modules=KEYS,
                                                       bias="none", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-5)
    forward = torch.compile(model) if compiled else model
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 128000, (BATCH, SEQ + 1), generator=gen).to(dev) for _ in range(8)]

    def step(b):
        logits = forward(input_ids=b[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(WARMUP):
        step(batches[i % len(batches)])
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    for i in range(TIMED):
        loss = step(batches[i % len(batches)])
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    print(json.dumps(dict(stack="torch+peft" + (" compiled" if compiled else ""), shape=shape,
                          torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                          trainable=sum(p.numel() for p in params), warmup_s=round(t1 - t0, 1),
                          tokens_per_sec=round(TIMED * BATCH * SEQ / (t2 - t1), 1),
                          peak_allocated_gb=round(torch.cuda.max_memory_allocated() / 1e9, 3),
                          final_loss=round(float(loss), 4))), flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "data":
        make_data(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "mlx":
        mlx_run(sys.argv[2], sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "grad-checkpoint")
    elif len(sys.argv) >= 3 and sys.argv[1] == "peft" and sys.argv[2] in SHAPES:
        peft_run(sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "compile")
    else:
        sys.exit(__doc__)

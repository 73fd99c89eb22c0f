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


def main():
    dest = out_dir("lora")
    dataset_golden(dest)


if __name__ == "__main__":
    main()

"""Encode throughput, lmlab vs HF `tokenizers`, single thread, on ~10 MB of mixed text.

Usage (after `make fixtures` and a build of lmlab_tests in BUILD, default build-tok):
  .deps/py/bin/python bench/tokenizer_bench.py [BUILD] [NAME ...]
The text is the tokenizer corpus (many scripts, code, emoji) plus ../shared/data,
repeated to 10 MB and encoded line by line by both; HF runs encode_batch with
TOKENIZERS_PARALLELISM=false / RAYON_NUM_THREADS=1, which is one Rust thread.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))
from _common import FIXTURES, SHARED  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = 10 * 1000 * 1000


def build_text() -> Path:
    lines = [json.loads(l) for l in open(FIXTURES / "tokenizer" / "corpus.jsonl", encoding="utf-8")]
    for p in sorted((SHARED / "data").glob("*/*.jsonl")):
        for l in open(p, encoding="utf-8"):
            r = json.loads(l)
            lines += [v for v in r.values() if isinstance(v, str)]
    # One line per record: newlines inside a record become spaces.
    lines = [l.replace("\r", " ").replace("\n", " ") for l in lines if l.strip()]
    out, size, i = [], 0, 0
    while size < TARGET:
        out.append(lines[i % len(lines)])
        size += len(out[-1].encode()) + 1
        i += 1
    path = FIXTURES / "tokenizer" / "bench_10mb.txt"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def hf_tokenizer(name: str) -> Tokenizer:
    if name != "smollm2":
        return Tokenizer.from_file(str(FIXTURES / "tokenizer" / name / "tokenizer.json"))
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    meta = json.load(open(FIXTURES / "tokenizer" / "smollm2" / "gguf_meta.json", encoding="utf-8"))
    toks = meta["tokenizer.ggml.tokens"]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)},
                               [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(toks, meta["tokenizer.ggml.token_type"]) if ty == 3])
    return tok


def main() -> None:
    build = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "build-tok")
    names = sys.argv[2:] or ["smollm2", "llama3", "qwen3", "llama2", "gemma3", "deepseek_v3"]
    text = build_text()
    lines = text.read_text(encoding="utf-8").split("\n")[:-1]
    nbytes = sum(len(l.encode()) for l in lines)
    for name in names:
        tok = hf_tokenizer(name)
        t0 = time.perf_counter()
        n = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        hf = time.perf_counter() - t0
        env = dict(os.environ, LMLAB_TOK_BENCH_TEXT=str(text), LMLAB_TOK_BENCH_NAME=name)
        res = subprocess.run([str(build / "lmlab_tests"), "--gtest_also_run_disabled_tests",
                              "--gtest_filter=TokenizerBench.DISABLED_Throughput"],
                             env=env, capture_output=True, text=True)
        line = next((l for l in res.stdout.splitlines() if l.startswith("lmlab ")), res.stdout[-500:])
        print(f"HF   {name}: {nbytes} bytes, {n} tokens, {hf:.3f} s, {nbytes / hf / 1e6:.2f} MB/s")
        print(line)


if __name__ == "__main__":
    main()

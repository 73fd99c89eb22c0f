"""Golden outputs for Gemma 3 270M Q4_K_M (`--model gemma3-270m`), the second
real model, from llama.cpp (llama-cpp-python) on the same GGUF file.

Writes under $LMLAB_FIXTURES/gemma/:
  tokenizer.jsonl   the tokenizer test strings with llama.cpp's ids (special
                    tokens parsed, no BOS) and decode without control tokens,
                    and HF `tokenizers`' ids and full decode from
                    ../shared/tokenizers/gemma3 (the same vocabulary)
  vocab.json        the ids llama.cpp ends generation at
  llamacpp.json     12 prompts: ids (with BOS), 32-token greedy continuations
                    and llama.cpp's top-2 margin at each step
  logits.safetensors  llama.cpp's last-position logits of each prompt (12 × 262144)
  gemma-f32.gguf    the same file with every tensor dequantized to F32 (gguf
                    package), and llamacpp_f32.safetensors: llama.cpp's
                    last-position logits on it for the first F32_PROMPTS prompts.
                    Both engines then multiply in float32 (no 8-bit activation
                    rounding), so the architecture is checked to summation order.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

from _common import out_dir, shared_tokenizer_json

GEMMA = Path(os.environ["LMLAB_GEMMA"]) if "LMLAB_GEMMA" in os.environ else None
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 5, 8, 13,",
    "Translate to French: I love reading books.",
    "The mitochondria is the powerhouse of",
    "¿Dónde está la biblioteca? Está",
    "Water boils at 100 degrees Celsius, which is",
    "import numpy as np\nx = np.arange(10)\nprint(",
    "The quick brown fox jumps over the lazy",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nName three colors.<end_of_turn>\n<start_of_turn>model\n",
]
GREEDY_TOKENS = 32
F32_PROMPTS = 4


def corpus():
    # The tokenizer tests' strings (tokenizer_golden.py builds them deterministically).
    sys.path.insert(0, str(Path(__file__).parent))
    from tokenizer_golden import build_corpus

    return build_corpus()


def tokenizer_golden(dest):
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    llm = Llama(model_path=str(GEMMA), vocab_only=True, verbose=False)
    hf = Tokenizer.from_str(shared_tokenizer_json("gemma3"))
    texts = corpus()
    agree = 0
    with open(dest / "tokenizer.jsonl", "w", encoding="utf-8") as f:
        for text in texts:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            hf_ids = hf.encode(text, add_special_tokens=False).ids
            agree += ids == hf_ids
            rec = {"text": text, "llama_cpp": ids, "hf": hf_ids,
                   "hf_dec": hf.decode(hf_ids, skip_special_tokens=False),
                   # The GGUF marks 6,249 tokens control (HF only 9 special): skipping
                   # follows llama.cpp, which drops control tokens unless asked for them.
                   "llama_cpp_dec": llm.detokenize(ids, special=False).decode("utf-8", errors="replace")}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    # The tokens llama.cpp ends generation at (end-of-generation set, from its vocabulary rules).
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eog = [i for i in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    (dest / "vocab.json").write_text(json.dumps({"eog": eog}))
    print(f"gemma_golden: tokenizer: {len(texts)} strings, llama.cpp == HF on {agree}; EOG {eog}", file=sys.stderr)


def model_golden(dest):
    from llama_cpp import Llama
    from safetensors.numpy import save_file

    # F32 KV cache, as for the default model (an F16 cache alone moves logits).
    llm = Llama(model_path=str(GEMMA), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0,
                type_k=0, type_v=0, flash_attn=False)
    cases, logits = [], {}
    for i, text in enumerate(PROMPTS):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        logits[f"case{i}"] = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        greedy, margins = [], []
        for _ in range(GREEDY_TOKENS):
            step = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.sort(step)[-2:]
            greedy.append(int(np.argmax(step)))
            margins.append(float(top2[1] - top2[0]))
            llm.eval([greedy[-1]])
        cases.append({"text": text, "ids": ids, "greedy": greedy, "margins": margins,
                      "greedy_text": llm.detokenize(greedy).decode("utf-8", errors="replace")})
    save_file(logits, str(dest / "logits.safetensors"))
    (dest / "llamacpp.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False))
    print(f"gemma_golden: llama.cpp logits and greedy text for {len(PROMPTS)} prompts", file=sys.stderr)


def write_gguf_f32(dest):
    import gguf

    r = gguf.GGUFReader(str(GEMMA))
    w = gguf.GGUFWriter(str(dest), "gemma3")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(f.types[0])
        sub = gguf.GGUFValueType(f.types[1]) if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, 0 if name == "general.file_type" else f.contents(), vtype, sub)
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def f32_golden(dest):
    from llama_cpp import Llama
    from safetensors.numpy import save_file

    f32 = dest / "gemma-f32.gguf"
    write_gguf_f32(f32)
    llm = Llama(model_path=str(f32), n_ctx=128, logits_all=True, verbose=False, n_threads=2, seed=0,
                type_k=0, type_v=0, flash_attn=False)
    logits = {}
    for i, text in enumerate(PROMPTS[:F32_PROMPTS]):
        llm.reset()
        llm.eval(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))
        logits[f"case{i}"] = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    save_file(logits, str(dest / "llamacpp_f32.safetensors"))
    print(f"gemma_golden: llama.cpp logits on the F32 copy for {F32_PROMPTS} prompts", file=sys.stderr)


def main():
    if GEMMA is None or not GEMMA.exists():
        raise SystemExit("gemma_golden: LMLAB_GEMMA (scripts/fetch-model.sh gemma3-270m) is required")
    dest = out_dir("gemma")
    tokenizer_golden(dest)
    model_golden(dest)
    f32_golden(dest)


if __name__ == "__main__":
    main()

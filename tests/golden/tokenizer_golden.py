"""Golden outputs of Hugging Face `tokenizers` (and llama.cpp) for the tokenizer tests.

Writes under $LMLAB_FIXTURES/tokenizer/:
  corpus.jsonl                 the test strings (deterministic, seeded)
  NAME/tokenizer.json          the six shared tokenizers, decompressed, plus
  NAME/tokenizer_config.json   their configs, so the C++ tests load plain files
  NAME/golden.jsonl            one line per corpus string: HF ids with and without
                               special tokens and HF decodes of them
  smollm2/gguf_meta.json       tokenizer.* keys of the default model's GGUF
  smollm2/golden.jsonl         same as above, from an HF tokenizer rebuilt from the
                               GGUF vocab + merges, plus llama.cpp's own ids
  gguf_spm/NAME.gguf           SentencePiece ("llama") GGUF vocabularies written with
  gguf_spm/NAME.golden.jsonl   the gguf package, and llama.cpp's ids for the corpus
"""
import contextlib
import json
import os
import random
import shutil
import sys

from _common import FIXTURES, MODEL, SHARED, TOKENIZER_NAMES, out_dir, shared_tokenizer_json

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

SEED = 1234


# ---------------------------------------------------------------------------
# Corpus

WORDS = {
    "en": "the quick brown fox jumps over the lazy dog while reading documentation about tokenizers".split(),
    "zh": ["我们", "今天", "天气", "很好", "机器学习", "语言模型", "中文", "分词", "测试", "北京"],
    "ja": ["こんにちは", "世界", "東京", "カタカナ", "ひらがな", "日本語", "テスト", "です", "ありがとう"],
    "ko": ["안녕하세요", "세계", "한국어", "토크나이저", "테스트", "감사합니다", "서울"],
    "ar": ["مرحبا", "بالعالم", "اللغة", "العربية", "نموذج", "اختبار", "شكرا"],
    "hi": ["नमस्ते", "दुनिया", "हिन्दी", "भाषा", "परीक्षण", "धन्यवाद", "मॉडल"],
    "ru": ["Привет", "мир", "русский", "язык", "модель", "тест", "спасибо", "ЁЛКА"],
    "el": ["Γειά", "σου", "κόσμε", "ελληνικά", "γλώσσα", "δοκιμή", "ΑΘΗΝΑ"],
    "he": ["שלום", "עולם", "עברית", "שפה", "מודל", "בדיקה"],
    "th": ["สวัสดี", "ชาวโลก", "ภาษาไทย", "ทดสอบ", "ขอบคุณ", "โมเดล"],
    "mix": ["naïve", "café", "Ünïcödé", "straße", "ﬁne", "Å", "e\u0301", "ｆｕｌｌｗｉｄｔｈ", "½", "①", "Ⅻ"],
}

CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()",
    "const auto& [k, v] = *it; // C++17\r\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<div class=\"x\">Hello &amp; welcome</div>",
    "fn main() { println!(\"{}\", 1_000_000u64); }",
    "x = {'a': [1, 2, 3], \"b\": None}  # dict",
    "    indented\n        more\n\n\n  back",
    "#include <vector>\nint main(){return 0;}",
]

SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<pad>", "<think>", "</think>",
    "<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<|EOT|>", "<tool_call>",
    "<|reserved_special_token_5|>", "<unused3>", "<mask>", "<repo_name>",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷", "❤️", "🧑🏿‍💻", "✌🏻", "🤖", "🎉🎉🎉", "👩‍❤️‍💋‍👨", "©️", "1️⃣",
]

CONTRACTIONS = ["I'm", "DON'T", "you're", "We'VE", "it's", "they'll", "He'd", "can't", "O'Neil", "'s", "y'all"]

WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\u00a0", "\u3000",
              "\u2009", "\u200b", "\v", "\f", "\u0085", "\u2028"]


def random_codepoints(rng: random.Random, n: int) -> str:
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.5:
            cp = rng.randint(0x20, 0x2FFF)
        elif r < 0.8:
            cp = rng.randint(0x3000, 0xFFFD)
        else:
            cp = rng.randint(0x10000, 0x1FAFF)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        out.append(chr(cp))
    return "".join(out)


def sentence(rng: random.Random, lang: str, n: int) -> str:
    words = [rng.choice(WORDS[lang]) for _ in range(n)]
    sep = "" if lang in ("zh", "ja", "th") and rng.random() < 0.6 else " "
    return sep.join(words)


def number(rng: random.Random) -> str:
    forms = [
        lambda: str(rng.randint(0, 9)),
        lambda: str(rng.randint(10, 10**6)),
        lambda: str(rng.randint(10**12, 10**30)),
        lambda: f"{rng.uniform(-1e6, 1e6):.4f}",
        lambda: f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(1900, 2100)}",
        lambda: "+1 (555) " + str(rng.randint(100, 999)) + "-" + str(rng.randint(1000, 9999)),
        lambda: "١٢٣٤" + str(rng.randint(0, 99)),
    ]
    return rng.choice(forms)()


def data_lines(limit: int) -> list:
    lines = []
    for path in sorted((SHARED / "data").glob("*/*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                rec = json.loads(line)
                for key in ("prompt", "completion", "text"):
                    if isinstance(rec.get(key), str):
                        lines.append(rec[key])
    return lines


def build_corpus() -> list:
    rng = random.Random(SEED)
    corpus = ["", " ", "a", "Hello world", "Hello, world!", "  leading", "trailing  ", "\n", "\t"]
    corpus += CODE + SPECIALS + EMOJI + CONTRACTIONS + WHITESPACE
    corpus += [w for ws in WORDS.values() for w in ws]
    langs = list(WORDS)
    generators = [
        lambda: sentence(rng, rng.choice(langs), rng.randint(1, 12)),
        lambda: " ".join(sentence(rng, rng.choice(langs), rng.randint(1, 4)) for _ in range(rng.randint(2, 4))),
        lambda: rng.choice(CODE) + rng.choice(WHITESPACE) + rng.choice(CODE),
        lambda: rng.choice(SPECIALS) + sentence(rng, "en", rng.randint(1, 5)) + rng.choice(SPECIALS),
        lambda: sentence(rng, "en", 3) + rng.choice(SPECIALS) + rng.choice(WHITESPACE) + sentence(rng, "zh", 2),
        lambda: "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 8))) + sentence(rng, "en", 2)
        + "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(0, 6))),
        lambda: " ".join(rng.choice(EMOJI) + rng.choice(["", " ", "a"]) for _ in range(rng.randint(1, 5))),
        lambda: " ".join(number(rng) for _ in range(rng.randint(1, 4))),
        lambda: " ".join(rng.choice(CONTRACTIONS) for _ in range(rng.randint(1, 6))),
        lambda: random_codepoints(rng, rng.randint(1, 30)),
        lambda: sentence(rng, "en", 4) + "".join(rng.choice(" \t\n") for _ in range(rng.randint(1, 5))),
        lambda: sentence(rng, "mix", rng.randint(1, 6)),
        lambda: rng.choice(SPECIALS) + rng.choice(SPECIALS) + " " + rng.choice(SPECIALS),
        lambda: "".join(rng.choice("abcXYZ019 .,;!?'\"-_()[]{}<>|\\/\t\n") for _ in range(rng.randint(1, 40))),
    ]
    while len(corpus) < 2200:
        corpus.append(rng.choice(generators)())
    corpus += data_lines(150)
    # Keep order, drop duplicates.
    seen, unique = set(), []
    for s in corpus:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


# ---------------------------------------------------------------------------
# Golden files

# Byte strings that are not UTF-8: lmlab replaces each maximal invalid subpart
# by U+FFFD, which is what Python's decode(errors="replace") does.
INVALID_UTF8 = [
    b"\xff", b"abc\xffdef", b"\xe4\xb8", b"\xe4\xb8 x", b"\xed\xa0\x80", b"\xc0\xaf",
    b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\x80", b"\x80\x80hello", b"caf\xe9", b"\xf5\x80\x80\x80",
    b"<|im_start|>\xfe<|im_end|>", b"\xe0\x80\x80", b"ok \xc3", b"\xf4\x90\x80\x80 end",
]


def write_invalid(tok: Tokenizer, path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for raw in INVALID_UTF8:
            text = raw.decode("utf-8", errors="replace")
            f.write(json.dumps({"hex": raw.hex(), "text": text,
                                "ids": tok.encode(text, add_special_tokens=False).ids}, ensure_ascii=False) + "\n")


def write_golden(tok: Tokenizer, corpus: list, path, extra=None) -> None:
    write_invalid(tok, path.parent / "invalid_utf8.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(corpus):
            ids = tok.encode(text, add_special_tokens=False).ids
            ids_sp = tok.encode(text, add_special_tokens=True).ids
            rec = {
                "text": text,
                "ids": ids,
                "ids_sp": ids_sp,
                "dec": tok.decode(ids_sp, skip_special_tokens=False),
                "dec_skip": tok.decode(ids_sp, skip_special_tokens=True),
                "dec_plain": tok.decode(ids, skip_special_tokens=False),
            }
            if extra:
                rec.update(extra(i, text))
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def shared_tokenizers(corpus: list) -> None:
    for name in TOKENIZER_NAMES:
        d = out_dir(f"tokenizer/{name}")
        text = shared_tokenizer_json(name)
        (d / "tokenizer.json").write_text(text, encoding="utf-8")
        shutil.copy(SHARED / "tokenizers" / name / "tokenizer_config.json", d / "tokenizer_config.json")
        write_golden(Tokenizer.from_str(text), corpus, d / "golden.jsonl")
        print(f"tokenizer fixtures: {name}: {len(corpus)} strings", file=sys.stderr)


def whitespace_pipeline(corpus: list) -> None:
    """llama2's vocabulary behind the Unicode-whitespace stages no shared
    tokenizer uses: a Strip normalizer, the WhitespaceSplit pre-tokenizer and an
    added token with lstrip/rstrip (what counts as whitespace, NBSP included,
    must be Python's str.isspace / Rust's char::is_whitespace there)."""
    from tokenizers import normalizers
    name = "llama2_whitespace"
    tok = Tokenizer.from_str(shared_tokenizer_json("llama2"))
    tok.normalizer = normalizers.Strip(left=True, right=True)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken("<sep>", lstrip=True, rstrip=True, special=True, normalized=False)])
    d = out_dir(f"tokenizer/{name}")
    (d / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    shutil.copy(SHARED / "tokenizers" / "llama2" / "tokenizer_config.json", d / "tokenizer_config.json")
    around = [w + "<sep>" + v for w in WHITESPACE for v in ("x", " y", WHITESPACE[-1] + "z")]
    write_golden(tok, corpus + around, d / "golden.jsonl")
    print(f"tokenizer fixtures: {name}: {len(corpus) + len(around)} strings", file=sys.stderr)


def lstrip_added_token(corpus: list) -> None:
    """llama3's byte-level tokenizer with an added token that absorbs the
    whitespace on its left (lstrip, like RoBERTa's <mask>): the spaces before
    it must not reach the byte-level pieces."""
    name = "llama3_lstrip"
    tok = Tokenizer.from_str(shared_tokenizer_json("llama3"))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    d = out_dir(f"tokenizer/{name}")
    (d / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    shutil.copy(SHARED / "tokenizers" / "llama3" / "tokenizer_config.json", d / "tokenizer_config.json")
    around = [a + w + "<mask>" + b for a in ("x", "") for w in ("", " ", "   ", "\n ", "\t") for b in ("y", " y")]
    write_golden(tok, corpus + around, d / "golden.jsonl")
    print(f"tokenizer fixtures: {name}: {len(corpus) + len(around)} strings", file=sys.stderr)


def duplicate_added_token(corpus: list) -> None:
    """llama3 with its last reserved token's entry renamed to the first added
    token's content: two added tokens with one text, where HF keeps the first."""
    name = "llama3_duplicate_added"
    t = json.loads(shared_tokenizer_json("llama3"))
    first = t["added_tokens"][0]
    t["added_tokens"][-1] = dict(first, id=t["added_tokens"][-1]["id"])
    tok = Tokenizer.from_str(json.dumps(t))
    d = out_dir(f"tokenizer/{name}")
    (d / "tokenizer.json").write_text(json.dumps(t, ensure_ascii=False), encoding="utf-8")
    shutil.copy(SHARED / "tokenizers" / "llama3" / "tokenizer_config.json", d / "tokenizer_config.json")
    around = [a + first["content"] + b for a in ("", "x", " ") for b in ("", "y", " y")]
    write_golden(tok, corpus + around, d / "golden.jsonl")
    print(f"tokenizer fixtures: {name}: {len(corpus) + len(around)} strings", file=sys.stderr)


def metaspace_pipeline(corpus: list) -> None:
    """llama2's vocabulary without byte fallback (unknown characters become
    <unk>, consecutive ones fused) behind a Metaspace pre-tokenizer that
    prepends only to the text's first section (prepend_scheme "first"), with
    special tokens inside the text: stages no shared tokenizer combines."""
    name = "llama2_metaspace"
    t = json.loads(shared_tokenizer_json("llama2"))
    t["model"]["byte_fallback"] = False
    t["model"]["fuse_unk"] = True
    t["normalizer"] = None
    t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    t["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    tok = Tokenizer.from_str(json.dumps(t))
    d = out_dir(f"tokenizer/{name}")
    (d / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    shutil.copy(SHARED / "tokenizers" / "llama2" / "tokenizer_config.json", d / "tokenizer_config.json")
    inside = [a + sp + b for a in ("hello", "x ", " ") for sp in ("<s>", "</s>", "<unk>") for b in ("world", " w", "")]
    write_golden(tok, corpus + inside, d / "golden.jsonl")
    print(f"tokenizer fixtures: {name}: {len(corpus) + len(inside)} strings", file=sys.stderr)


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    vals = [f.parts[i] for i in f.data]
    tname = f.types[0].name
    if tname == "ARRAY":
        sub = f.types[1].name if len(f.types) > 1 else ""
        if sub == "STRING":
            return [bytes(v).decode("utf-8", errors="surrogateescape") for v in vals]
        return [v.tolist()[0] for v in vals]
    if tname == "STRING":
        return bytes(vals[0]).decode("utf-8")
    v = vals[0].tolist()[0]
    return bool(v) if tname == "BOOL" else v


def smollm2(corpus: list) -> None:
    if MODEL is None or not MODEL.exists():
        raise SystemExit("tokenizer_golden: LMLAB_MODEL (the default GGUF) is required")
    from gguf import GGUFReader

    reader = GGUFReader(str(MODEL))
    keys = [k for k in reader.fields if k.startswith("tokenizer.")]
    meta = {k: field_value(reader, k) for k in keys}
    d = out_dir("tokenizer/smollm2")
    (d / "gguf_meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    # HF oracle rebuilt from the GGUF vocab: SmolLM2's own tokenizer.json is a
    # byte-level BPE with Digits(individual_digits) before ByteLevel(use_regex).
    tokens = meta["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"]
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(control)

    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(MODEL), vocab_only=True, verbose=False)

    def extra(i, text):
        return {"llama_cpp": llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)}

    write_golden(tok, corpus, d / "golden.jsonl", extra)
    n = len(corpus)
    agree = 0
    with open(d / "golden.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            agree += r["ids"] == r["llama_cpp"]
    print(f"tokenizer fixtures: smollm2: {n} strings, HF oracle == llama.cpp on {agree}", file=sys.stderr)


# ---------------------------------------------------------------------------
# GGUF SentencePiece vocabularies (tokenizer.ggml.model "llama")

# Written here with the gguf package from shared tokenizer.json files: llama.cpp's
# SentencePiece tokenizer merges the adjacent pair whose merged piece has the
# highest score, so each piece scores minus the rank of the first merge that
# makes it (the order HF's BPE applies); pieces no merge makes score below all.
# name -> (shared tokenizer, add_space_prefix; None: the key is left out and the
# reader's default, llama.cpp's, applies).
SPM_FROM_JSON = {"llama2": ("llama2", True), "gemma3": ("gemma3", False), "llama2_no_prefix_key": ("llama2", None)}
# Further real GGUF files with a "llama" vocabulary: name -> path of the model
# file, tokenized by llama.cpp and checked by TokenizerGgufSpm.MatchesLlamaCpp
# like the ones written above. Gemma 3 270M's own GGUF is checked by
# gemma_golden.py and tests/tokenizer/gemma_gguf_test.cpp.
SPM_REAL_GGUF = {}


def write_spm_gguf(name: str, add_space_prefix, path) -> None:
    import gguf

    t = json.loads(shared_tokenizer_json(name))
    m = t["model"]
    first_merge = {}
    for rank, merge in enumerate(m["merges"]):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        first_merge.setdefault(a + b, rank)
    added = {a["id"]: a for a in t["added_tokens"]}
    by_id = sorted(m["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id))), name
    tokens, scores, types = [], [], []
    for piece, i in by_id:
        tokens.append(piece)
        if i in added:
            kind = (gguf.TokenType.UNKNOWN if piece == m.get("unk_token") else
                    gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
            score = 0.0
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            kind, score = gguf.TokenType.BYTE, 0.0
        else:
            kind = gguf.TokenType.NORMAL
            score = -float(first_merge.get(piece, len(m["merges"]) + i))
        types.append(kind)
        scores.append(score)
    cfg = json.loads((SHARED / "tokenizers" / name / "tokenizer_config.json").read_text())
    token_id = lambda key: m["vocab"][cfg[key] if isinstance(cfg[key], str) else cfg[key]["content"]]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(token_id("bos_token"))
    w.add_eos_token_id(token_id("eos_token"))
    w.add_add_bos_token(bool(cfg.get("add_bos_token", True)))
    w.add_add_eos_token(bool(cfg.get("add_eos_token", False)))
    if add_space_prefix is not None:
        w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def spm_ggufs(corpus: list) -> None:
    """Each GGUF and llama.cpp's ids (vocab_only) for every corpus string, with
    and without BOS, under tokenizer/gguf_spm/; index.json lists them."""
    import llama_cpp

    d = out_dir("tokenizer/gguf_spm")
    files = {}
    for name, (shared, space_prefix) in SPM_FROM_JSON.items():
        files[name] = d / f"{name}.gguf"
        write_spm_gguf(shared, space_prefix, files[name])
    files.update(SPM_REAL_GGUF)
    for name, path in files.items():
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        with open(d / f"{name}.golden.jsonl", "w", encoding="utf-8") as f, quiet_stderr():
            for text in corpus:
                raw = text.encode("utf-8")
                f.write(json.dumps({"text": text, "ids": llm.tokenize(raw, add_bos=False, special=True),
                                    "ids_bos": llm.tokenize(raw, add_bos=True, special=True)},
                                   ensure_ascii=False) + "\n")
        del llm
        print(f"tokenizer fixtures: {name} GGUF ('llama' vocabulary): {len(corpus)} strings from llama.cpp",
              file=sys.stderr)
    # Paths relative to this folder where written here (fixture folders get copied).
    index = {name: str(path.relative_to(d)) if path.parent == d else str(path) for name, path in files.items()}
    (d / "index.json").write_text(json.dumps(index))


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp warns on stderr for each string that starts with BOS and gets another."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main() -> None:
    corpus = build_corpus()
    d = out_dir("tokenizer")
    with open(d / "corpus.jsonl", "w", encoding="utf-8") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    smollm2(corpus)
    shared_tokenizers(corpus)
    whitespace_pipeline(corpus)
    metaspace_pipeline(corpus)
    lstrip_added_token(corpus)
    duplicate_added_token(corpus)
    spm_ggufs(corpus)


if __name__ == "__main__":
    main()

"""Writes the starting corpora of the GGUF, safetensors and config.json fuzzers
into tests/fuzz/seeds/{gguf,safetensors,config}/ (kept in the repository; run
again only to change them). Seeds are small, valid files the fuzzers mutate:
GGUFs written by the `gguf` package (a byte-level and a SentencePiece
vocabulary, F32/F16/Q8_0 tensors), the first 16 KiB of the default model's
real header, safetensors files written by the `safetensors` package, and the
config.json of the tiny test checkpoints.

Usage: .deps/py/bin/python tests/fuzz/make_seeds.py   (after `make model fixtures`)
"""
import json
import os
import pathlib
import shutil

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "fuzz" / "seeds"
FIXTURES = pathlib.Path(os.environ.get("LMLAB_FIXTURES", ROOT / ".deps" / "fixtures"))
MODEL = pathlib.Path(os.environ.get("LMLAB_HOME", pathlib.Path.home() / ".cache" / "lmlab")) / "models" / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"


def out(name: str) -> pathlib.Path:
    d = SEEDS / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def tiny_gguf(path: pathlib.Path, spm: bool) -> None:
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_feed_forward_length(16)
    w.add_layer_norm_rms_eps(1e-5)
    if spm:
        tokens = ["<unk>", "<s>", "</s>", "<0x41>", "▁", "▁a", "a", "b", "ab", "▁ab"]
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([0.0, 0.0, 0.0, -5.0, -1.0, -2.0, -3.0, -3.0, -1.5, -0.5])
        w.add_token_types([2, 3, 3, 6, 1, 1, 1, 1, 1, 1])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
    else:
        tokens = ["<|endoftext|>", "a", "b", "Ġ", "ab", "Ġa", "Ġab", "1", "2", "<|im_start|>"]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_merges(["a b", "Ġ a", "Ġa b"])
        w.add_token_types([3, 1, 1, 1, 1, 1, 1, 1, 1, 3])
        w.add_bos_token_id(9)
        w.add_eos_token_id(0)
        w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.arange(80, dtype=np.float32).reshape(10, 8))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
    q8 = np.zeros((2, 34), dtype=np.uint8)  # two Q8_0 blocks of 32 values
    w.add_tensor("blk.0.ffn_up.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_seeds() -> None:
    d = out("gguf")
    tiny_gguf(d / "tiny-gpt2.gguf", spm=False)
    tiny_gguf(d / "tiny-spm.gguf", spm=True)
    if MODEL.exists():  # a real header, cut: the fuzzer grows it back from the layout
        (d / "smollm2-head-16k.gguf").write_bytes(MODEL.read_bytes()[:16384])


def safetensors_seeds() -> None:
    d = out("safetensors")
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(4, dtype=np.float16)},
              str(d / "two.safetensors"), metadata={"format": "mlx"})
    save_file({"w": np.ones((2, 2), dtype=np.uint32), "scales": np.ones((2, 1), dtype=np.float16),
               "empty": np.zeros((0, 3), dtype=np.int8)}, str(d / "packed.safetensors"))


def config_seeds() -> None:
    d = out("config")
    for name in ("llama_q4", "qwen3", "qwen2_q4", "llama3_scaled"):
        src = FIXTURES / "model" / "tiny" / name / "config.json"
        if src.exists():
            shutil.copy(src, d / f"{name}.json")
    smol = FIXTURES / "model" / "smollm2-mlx-q4" / "config.json"
    if smol.exists():
        shutil.copy(smol, d / "smollm2-mlx-q4.json")
    (d / "minimal.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "vocab_size": 10, "quantization": {"group_size": 32, "bits": 4,
                                                                    "lm_head": False}}))


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    config_seeds()
    for sub in ("gguf", "safetensors", "config"):
        files = sorted((SEEDS / sub).iterdir())
        print(f"{sub}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")

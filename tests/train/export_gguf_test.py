"""`lmlab fuse --export-gguf` against two independent readers: the gguf
package and llama.cpp (llama-cpp-python).

Seeded random LoRA adapters on the default model's last two blocks (q, k, v,
down projections: q and k test llama.cpp's row permutation) are fused and
exported twice: keeping the base's blocks (Q4_1, the Q8_0 embeddings) and with
--dequantize (F16). The gguf package reads every metadata key of the base
back with its type and value (general.file_type excepted), every tensor under
the base's name, shape and type, and the tensors no adapter touched byte for
byte (so the Q4_1/Q8_0 packing and the q/k permutation are the base's exactly).
llama.cpp then loads both files. On the F16 file its 24 greedy tokens equal
lmlab's running the base with the adapters unfused. On the block-kept file,
where the two engines' Q4_1 arithmetic differs, lmlab's greedy tokens on the
same file are, teacher-forced, each within GAP logits of llama.cpp's best."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import numpy as np

BINARY = os.environ.get("LMLAB_BINARY", "build/lmlab")
MODEL = Path(os.path.expanduser("~/.cache/lmlab/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
PROMPT = "Who won Super Bowl LIX, and what was the score?"
TOKENS = 24
GAP = 1.0
LAYERS = (28, 29)
KEYS = {"self_attn.q_proj": (576, 576), "self_attn.k_proj": (576, 192), "self_attn.v_proj": (576, 192),
        "mlp.down_proj": (1536, 576)}
GGUF_KEYS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "mlp.down_proj": "ffn_down"}


def lmlab(*args):
    r = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"lmlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def write_adapters(folder, rank=4, seed=7):
    import mlx.core as mx
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in LAYERS:
        for key, (n_in, n_out) in KEYS.items():
            p = f"model.layers.{layer}.{key}"
            tensors[p + ".lora_a"] = mx.array(rng.uniform(-1, 1, (n_in, rank)).astype(np.float32) / np.sqrt(n_in))
            tensors[p + ".lora_b"] = mx.array(rng.normal(0, 0.05, (rank, n_out)).astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / "adapters.safetensors"), tensors)
    (folder / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": len(LAYERS),
        "lora_parameters": {"rank": rank, "scale": 20.0, "dropout": 0.0, "keys": list(KEYS)}}))


def lmlab_greedy(*model_args):
    out = json.loads(lmlab("generate", *model_args, "--prompt", PROMPT, "--max-tokens", str(TOKENS), "--temp", "0",
                           "--ignore-eos", "--json"))
    return out["prompt_tokens"], out["tokens"]


def llama_cpp_greedy(path, prompt_ids):
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False)
    ids = []
    for t in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        ids.append(int(t))
        if len(ids) == TOKENS:
            break
    return ids


def llama_cpp_gaps(path, prompt_ids, ids):
    # llama.cpp's best logit minus its logit of ids[i], at each position of prompt + ids.
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, logits_all=True)
    llm.eval(prompt_ids + ids)
    scores = np.array(llm.scores[:llm.n_tokens])
    rows = [scores[len(prompt_ids) - 1 + i] for i in range(len(ids))]
    return [float(r.max() - r[t]) for r, t in zip(rows, ids)]


def adapted(name):
    return any(name == f"blk.{layer}.{g}.weight" for layer in LAYERS for g in GGUF_KEYS.values())


@unittest.skipUnless(MODEL.exists(), "run make model")
class ExportGguf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(prefix="lmlab-export-gguf-"))
        cls.adapters = cls.dir / "adapters"
        write_adapters(cls.adapters)
        cls.blocks = cls.dir / "fused-q4_1.gguf"
        cls.f16 = cls.dir / "fused-f16.gguf"
        cls.out_blocks = lmlab("fuse", "--model", str(MODEL), "--adapter-path", str(cls.adapters), "--export-gguf",
                               str(cls.blocks))
        lmlab("fuse", "--model", str(MODEL), "--adapter-path", str(cls.adapters), "--export-gguf", str(cls.f16),
              "--dequantize")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)  # two exported models, 350 MB

    def test_writes_only_the_gguf(self):
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["adapters", "fused-f16.gguf", "fused-q4_1.gguf"])
        self.assertIn("8 fused layers", self.out_blocks)

    def check_reader(self, path, dequantized):
        from gguf import GGUFReader
        base, ours = GGUFReader(str(MODEL)), GGUFReader(str(path))
        skip = {"general.file_type"}
        base_keys = [k for k in base.fields if not k.startswith("GGUF.")]
        our_keys = [k for k in ours.fields if not k.startswith("GGUF.")]
        self.assertEqual(sorted(base_keys), sorted(our_keys))
        for k in base_keys:
            if k in skip:
                continue
            self.assertEqual(base.fields[k].types, ours.fields[k].types, k)
            self.assertEqual(base.fields[k].contents(), ours.fields[k].contents(), k)
        self.assertEqual(ours.fields["general.file_type"].contents(), 1 if dequantized else 3)
        theirs = {t.name: t for t in base.tensors}
        self.assertEqual(sorted(theirs), sorted(t.name for t in ours.tensors))
        for t in ours.tensors:
            b = theirs[t.name]
            self.assertEqual(list(t.shape), list(b.shape), t.name)
            self.assertEqual(t.data_offset % 32, 0, t.name)
            if len(t.shape) == 1:
                self.assertEqual(t.tensor_type.name, "F32", t.name)
                np.testing.assert_array_equal(t.data, b.data, t.name)
            elif dequantized:
                self.assertEqual(t.tensor_type.name, "F16", t.name)
            else:
                self.assertEqual(t.tensor_type.name, b.tensor_type.name, t.name)
                if not adapted(t.name):
                    np.testing.assert_array_equal(t.data, b.data, t.name)
                else:
                    self.assertFalse(np.array_equal(t.data, b.data), t.name)

    def test_gguf_package_reads_the_block_file(self):
        self.check_reader(self.blocks, dequantized=False)

    def test_gguf_package_reads_the_f16_file(self):
        self.check_reader(self.f16, dequantized=True)

    def test_llama_cpp_runs_the_block_file_as_lmlab_does(self):
        # lmlab and llama.cpp round Q4_1 activations differently, so their greedy
        # paths can part at a near-tie (on the base file itself at token 9, by
        # 0.58 logits). Teacher-forced on lmlab's tokens, each must be within
        # GAP logits of llama.cpp's best: measured 0.24 here; a wrong block
        # packing or q/k row order puts it several logits away.
        prompt, ours = lmlab_greedy("--model", str(self.blocks))
        gaps = llama_cpp_gaps(self.blocks, prompt, ours)
        self.assertLess(max(gaps), GAP, gaps)
        self.assertEqual(sum(g == 0 for g in gaps[:7]), 7, gaps)

    def test_llama_cpp_runs_the_f16_file_as_the_adapted_model(self):
        prompt, ours = lmlab_greedy("--model", str(MODEL), "--adapter-path", str(self.adapters))
        base_prompt, base = lmlab_greedy("--model", str(MODEL))
        self.assertNotEqual(ours, base, "the adapters must change the greedy tokens for this test to mean anything")
        self.assertEqual(llama_cpp_greedy(self.f16, prompt), ours)

    def test_refusals_write_nothing(self):
        r = subprocess.run([BINARY, "fuse", "--model", str(MODEL), "--adapter-path", str(self.adapters),
                            "--export-gguf", str(self.blocks)], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already exists", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()

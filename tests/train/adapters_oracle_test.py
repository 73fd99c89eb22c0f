"""Adapter files both ways with mlx-lm, through the command line.

`lmlab lora` trains LoRA and DoRA adapters on the 4-bit parity checkpoint
(the default model's layout at a tiny size, tests/golden/lora_golden.py);
mlx_lm.load(model, adapter_path=...) loads them, and its greedy continuation of
a Super Bowl prompt has the same token ids as `lmlab generate --adapter-path`.
The reverse: adapters trained by mlx_lm.lora (the golden run) give the same
greedy ids in lmlab as in mlx-lm. Also checks the run's files: mlx-lm's
adapter_config.json keys, a periodic NNNNNNN_adapters.safetensors, the CSV log
and the SVG curve, and no temp file left behind. `lmlab fuse` (re-quantized and
--dequantize) writes the same tensors as `mlx_lm fuse` from the same adapters,
and the fused model's greedy ids equal the adapted model's in lmlab and mlx-lm."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step

BINARY = os.environ.get("LMLAB_BINARY", "build/lmlab")
SOURCE = Path(os.environ.get("LMLAB_SOURCE_DIR", ".")).resolve()
FIXTURES = Path(os.environ.get("LMLAB_FIXTURES", SOURCE / ".deps" / "fixtures")) / "lora"
PROMPT = "Who won Super Bowl LIX, and what was the score?"
TOKENS = 24


def lmlab(*args):
    r = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError(f"lmlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def lmlab_greedy(model, adapters):
    out = json.loads(lmlab("generate", "--model", str(model), "--adapter-path", str(adapters), "--prompt", PROMPT,
                           "--max-tokens", str(TOKENS), "--temp", "0", "--ignore-eos", "--json"))
    return out["prompt_tokens"], out["tokens"]


def mlx_lm_greedy(model, adapters, prompt_ids):
    m, _ = load(str(model), adapter_path=str(adapters))
    ids = []
    for token, _ in generate_step(mx.array(prompt_ids), m, max_tokens=TOKENS, sampler=lambda x: mx.argmax(x, -1)):
        ids.append(int(token))
    return ids


@unittest.skipUnless((FIXTURES / "parity.json").exists(), "run scripts/make-fixtures.sh")
class Adapters(unittest.TestCase):
    model = FIXTURES / "model"

    def train(self, kind, extra=()):
        out = Path(tempfile.mkdtemp(prefix=f"lmlab-adapters-{kind}-"))
        lmlab("lora", "--model", str(self.model), "--data", str(FIXTURES / "data"), "--train",
              "--fine-tune-type", kind, "--iters", "12", "--batch-size", "4", "--learning-rate", "2e-3",
              "--num-layers", "2", "--steps-per-eval", "6", "--val-batches", "1", "--save-every", "6",
              "--max-seq-length", "128", "--mask-prompt", "--seed", "3", "--adapter-path", str(out), *extra)
        return out

    def check_both_engines_agree(self, adapters):
        prompt, ours = lmlab_greedy(self.model, adapters)
        theirs = mlx_lm_greedy(self.model, adapters, prompt)
        self.assertEqual(ours, theirs, f"greedy ids with {adapters}")

    def test_lmlab_lora_adapters_load_in_mlx_lm(self):
        out = self.train("lora")
        names = sorted(p.name for p in out.iterdir())
        for f in ("adapter_config.json", "adapters.safetensors", "0000006_adapters.safetensors",
                  "0000012_adapters.safetensors", "train_log.csv", "loss_curve.svg"):
            self.assertIn(f, names)
        self.assertFalse([n for n in names if ".tmp" in n], names)
        config = json.loads((out / "adapter_config.json").read_text())
        self.assertEqual(config["fine_tune_type"], "lora")
        self.assertEqual(config["num_layers"], 2)
        self.assertEqual(config["lora_parameters"]["rank"], 8)
        weights = mx.load(str(out / "adapters.safetensors"))
        self.assertIn("model.layers.1.self_attn.q_proj.lora_a", weights)
        self.assertEqual(weights["model.layers.1.self_attn.q_proj.lora_a"].shape, (96, 8))
        self.assertGreater(float(mx.abs(weights["model.layers.1.mlp.down_proj.lora_b"]).max()), 0)
        self.check_both_engines_agree(out)

    def test_lmlab_dora_adapters_load_in_mlx_lm(self):
        self.check_both_engines_agree(self.train("dora"))

    def test_mlx_lm_adapters_load_in_lmlab(self):
        self.check_both_engines_agree(FIXTURES / "adapters_lora")
        self.check_both_engines_agree(FIXTURES / "adapters_dora")

    def check_fuse(self, adapters, *extra):
        tmp = Path(tempfile.mkdtemp(prefix="lmlab-fuse-"))
        ours, theirs = tmp / "lmlab", tmp / "mlx_lm"
        lmlab("fuse", "--model", str(self.model), "--adapter-path", str(adapters), "--save-path", str(ours), *extra)
        subprocess.run([sys.executable, "-m", "mlx_lm", "fuse", "--model", str(self.model), "--adapter-path",
                        str(adapters), "--save-path", str(theirs), *extra], check=True, capture_output=True)
        a, b = {}, {}
        for d, w in ((ours, a), (theirs, b)):
            for f in d.glob("*.safetensors"):
                w.update(mx.load(str(f)))
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            self.assertEqual(a[k].dtype, b[k].dtype, k)
            # Packed words and scales are the same quantize call on the merged
            # weight, but the float merge's GEMM is another BLAS in each process
            # (mlx's wheel: reference BLAS; lmlab: OpenBLAS), so a value that sits
            # on a rounding boundary may land in the neighbouring bucket: a few
            # words in a thousand may differ, the rest and the scales may not.
            if a[k].dtype == mx.uint32:
                differ = mx.sum(a[k] != b[k]).item()
                if differ: print(f"[ fuse ] {k}: {differ} of {a[k].size} words differ", file=sys.stderr)
                self.assertLessEqual(differ, max(1, a[k].size // 1000), f"{k}: {differ} of {a[k].size} words differ")
            else:
                self.assertTrue(mx.allclose(a[k], b[k], rtol=1e-5, atol=1e-6).item(), k)
        prompt, adapted = lmlab_greedy(self.model, adapters)
        out = json.loads(lmlab("generate", "--model", str(ours), "--prompt", PROMPT, "--max-tokens", str(TOKENS),
                               "--temp", "0", "--ignore-eos", "--json"))
        self.assertEqual(out["prompt_tokens"], prompt)
        m, _ = load(str(theirs))
        ids = [int(t) for t, _ in generate_step(mx.array(prompt), m, max_tokens=TOKENS,
                                                sampler=lambda x: mx.argmax(x, -1))]
        self.assertEqual(out["tokens"], ids, "lmlab and mlx-lm on the fused models")
        if "--dequantize" in extra:
            self.assertEqual(out["tokens"], adapted, "the fused float model and the adapted one")

    def test_fuse_equals_mlx_lm_fuse(self):
        for kind in ("lora", "dora"):
            with self.subTest(kind=kind):
                self.check_fuse(FIXTURES / f"adapters_{kind}")
                self.check_fuse(FIXTURES / f"adapters_{kind}", "--dequantize")


if __name__ == "__main__":
    unittest.main()

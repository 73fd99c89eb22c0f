"""Fine-tuning speed and memory: `lmlab lora` beside PyTorch + PEFT on this
machine's CPU (docs/benchmarks.md, "Fine-tuning: lmlab lora, PEFT").

One configuration for both: the default model (SmolLM2-135M-Instruct), LoRA
rank 8, scale 20 (PEFT: lora_alpha = 160, its scaling is alpha / r), no
dropout, every projection (q, k, v, o, gate, up, down) of the last 16 blocks,
batch 4 of the Super Bowl data with the prompt masked, sequences up to lmlab's
default 2048 tokens (none is longer), Adam at 1e-4, seed 0; WARMUP iterations
and then ITERS measured ones; with and without gradient checkpointing. PEFT
trains the float32 Hugging Face copy (fixtures' model/smollm2-f32); lmlab
trains the same float32 copy (the like-for-like row) and the default 4-bit
GGUF. Both see the same batches: lmlab's (records sorted by token count,
grouped in fours, the batch order numpy's RandomState(seed).permutation),
padded the same way (1 + a multiple of 32 tokens).

Tokens/s counts the trained tokens: the target tokens the loss sees (the
completion, not the prompt, not the padding), over the measured iterations'
step time; both sides count them from their own tokenization. Peak memory is
the process's maximum RSS from /usr/bin/time (lmlab's MLX peak is printed
beside it).

The PyTorch stack is benchmark-only and lives in .deps/bench-peft (installed
on first use; `make test` never needs it). PyPI's torch wheel for Linux x86_64
is the CUDA build: `import torch` loads libtorch_cuda.so, which needs the CUDA
runtime libraries even on a machine without a GPU, and PyPI has no CPU-only
x86_64 wheel. So torch is installed with --no-deps beside only the nvidia-*
libraries it links and its pure-Python dependencies (no triton, no
cuda-bindings): about 4.3 GB on disk. transformers is .deps/py's.

  .deps/py/bin/python bench/peft_bench.py [--reps 2] [--iters 20] [--warmup 2] [--write]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ROOT / ".deps" / "bench-peft"
FIXTURES = Path(os.environ.get("LMLAB_FIXTURES", ROOT / ".deps" / "fixtures"))
F32_DIR = FIXTURES / "model" / "smollm2-f32"
DATA = ROOT.parent / "shared" / "data" / "superbowl"
LMLAB = Path(os.environ.get("LMLAB", ROOT / "build" / "lmlab"))
PY = sys.executable
DOC = ROOT / "docs" / "benchmarks.md"

TORCH = "torch==2.15.0"
# What torch 2.15.0's libraries link (readelf -d: NEEDED), pinned as its metadata pins them.
TORCH_LIBS = ["nvidia-cuda-runtime==13.2.86", "nvidia-cublas==13.4.1.3", "nvidia-cuda-cupti==13.2.86",
              "nvidia-cuda-nvrtc==13.2.86", "nvidia-cufft==12.2.0.57", "nvidia-cufile==1.17.1.22",
              "nvidia-cusolver==12.2.0.11", "nvidia-cusparse==12.7.10.12", "nvidia-nvjitlink==13.5.37",
              "nvidia-cudnn-cu13==9.26.0.51", "nvidia-cusparselt-cu13==0.8.1", "nvidia-nccl-cu13==2.30.7",
              "nvidia-nvshmem-cu13==3.7.2"]
PURE = ["typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock", "fsspec",
        "peft==0.21.2", "accelerate==1.15.0", "psutil==7.2.2"]

CONFIG = dict(rank=8, scale=20.0, num_layers=16, batch=4, lr=1e-4, seed=0, max_seq_length=2048,
              keys=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def ensure_extras():
    if (EXTRAS / "peft").exists() and (EXTRAS / "torch").exists():
        return
    subprocess.run([PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target",
                    str(EXTRAS), TORCH, *TORCH_LIBS, *PURE], check=True)


def gguf_path():
    return subprocess.run([str(ROOT / "scripts/fetch-model.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


# ---- the batches, as lmlab makes them (src/train/batches.cpp, dataset.cpp) ----

def examples(tok):
    out = []
    for line in (DATA / "train.jsonl").read_text().splitlines():
        r = json.loads(line)
        user = [{"role": "user", "content": r["prompt"]}]
        full = tok.apply_chat_template(user + [{"role": "assistant", "content": r["completion"]}], tokenize=True)
        prompt = tok.apply_chat_template(user, tokenize=True, add_generation_prompt=True)
        full = full["input_ids"] if hasattr(full, "keys") else full
        prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        out.append((list(full), len(prompt)))
    return out


def batches(ex, n, batch, seed):
    import numpy as np
    idx = sorted(range(len(ex)), key=lambda i: len(ex[i][0]))  # stable, as std::stable_sort
    groups = [idx[i:i + batch] for i in range(0, len(idx) - batch + 1, batch)]
    order = np.random.RandomState(seed).permutation(len(groups))
    return [groups[order[i % len(groups)]] for i in range(n)]


def padded(ex, group, max_len):
    longest = max(len(ex[i][0]) for i in group)
    T = min(1 + 32 * ((longest + 31) // 32), max_len)
    tokens = [[0] * T for _ in group]
    lengths = []
    for b, i in enumerate(group):
        t, off = ex[i]
        t = t[:max_len]
        tokens[b][:len(t)] = t
        lengths.append((off, len(t)))
    return tokens, lengths


# ---- PEFT: one run, in its own process (its peak RSS is the run's) ----

def peft_worker(args):
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(CONFIG["seed"])
    tok = AutoTokenizer.from_pretrained(str(F32_DIR))
    model = AutoModelForCausalLM.from_pretrained(str(F32_DIR), dtype=torch.float32)
    n_layers = model.config.num_hidden_layers
    lcfg = LoraConfig(r=CONFIG["rank"], lora_alpha=CONFIG["scale"] * CONFIG["rank"], lora_dropout=0.0,
                      target_modules=CONFIG["keys"], bias="none", task_type="CAUSAL_LM",
                      layers_to_transform=list(range(n_layers - CONFIG["num_layers"], n_layers)))
    model = get_peft_model(model, lcfg)
    model.config.use_cache = False
    if args.grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=CONFIG["lr"])
    ex = examples(tok)
    steps = []
    for group in batches(ex, args.warmup + args.iters, CONFIG["batch"], CONFIG["seed"]):
        tokens, lengths = padded(ex, group, CONFIG["max_seq_length"])
        t0 = time.perf_counter()
        x = torch.tensor(tokens)
        inputs, targets = x[:, :-1], x[:, 1:]
        pos = torch.arange(1, x.shape[1]).unsqueeze(0)
        off = torch.tensor([o for o, _ in lengths]).unsqueeze(1)
        end = torch.tensor([n for _, n in lengths]).unsqueeze(1)
        mask = ((pos >= off) & (pos < end)).float()  # lmlab's mask: the completion's real tokens
        logits = model(input_ids=inputs, use_cache=False).logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
        ntoks = mask.sum()
        loss = (ce * mask.reshape(-1)).sum() / ntoks
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps.append((time.perf_counter() - t0, int(ntoks.item()), float(loss.item())))
    measured = steps[args.warmup:]
    print(json.dumps({"seconds": sum(s for s, _, _ in measured), "tokens": sum(n for _, n, _ in measured),
                      "warmup_loss": sum(l for _, _, l in steps[:args.warmup]) / max(1, args.warmup),
                      "trainable": trainable}))


def peft_run(args, gc):
    env = dict(os.environ, PYTHONPATH=str(EXTRAS))
    cmd = [PY, __file__, "--peft-worker", "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads)] + (["--grad-checkpoint"] if gc else [])
    out, rss, wall = timed(cmd, env)
    r = json.loads(out.strip().splitlines()[-1])
    return dict(r, rss_gb=rss, wall=wall)


# ---- lmlab ----

def lmlab_run(args, model, gc):
    with tempfile.TemporaryDirectory() as d:
        n = args.warmup + args.iters
        cmd = [str(LMLAB), "lora", "-m", model, "--data", str(DATA), "--mask-prompt",
               "--batch-size", str(CONFIG["batch"]), "--iters", str(n), "--steps-per-report", str(args.warmup),
               "--val-batches", "0", "--steps-per-eval", "1000000", "--save-every", "1000000",
               "--learning-rate", str(CONFIG["lr"]), "--seed", str(CONFIG["seed"]),
               "--rank", str(CONFIG["rank"]), "--lora-scale", str(CONFIG["scale"]),
               "--num-layers", str(CONFIG["num_layers"]), "--optimizer", "adam",
               "--max-seq-length", str(CONFIG["max_seq_length"]), "--adapter-path", d]
        cmd += ["--grad-checkpoint"] if gc else []
        out, rss, wall = timed(cmd, dict(os.environ))
        rows = [r.split(",") for r in (Path(d) / "train_log.csv").read_text().splitlines()[1:]]
    reports = [(int(r[0]), float(r[1]), float(r[4]), int(r[6])) for r in rows if r[1]]
    warm = [r for r in reports if r[0] <= args.warmup]
    measured = [r for r in reports if r[0] > args.warmup]
    seconds = sum(args.warmup / r[2] for r in measured)  # lmlab's it/s is steps-per-report over the window's time
    peak = re.search(r"Peak memory ([\d.]+) GB \(planned ([\d.]+) GB", out)
    return {"seconds": seconds, "tokens": measured[-1][3] - warm[-1][3], "warmup_loss": warm[-1][1],
            "mlx_peak_gb": float(peak.group(1)), "planned_gb": float(peak.group(2)), "rss_gb": rss, "wall": wall}


def timed(cmd, env):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        r = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%M %e"] + cmd, capture_output=True, text=True,
                           env=env, cwd=ROOT)
        if r.returncode != 0:
            sys.exit(f"peft_bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        kb, wall = tf.read().split()[-2:]
    return r.stdout, int(kb) / 1024 ** 2, float(wall)


# ---- the tables ----

def mean(xs):
    return sum(xs) / len(xs)


def table(rows):
    """Per engine and checkpointing: each run's tokens/s, their mean, the
    largest peak RSS, and both against PEFT's with the same checkpointing;
    then what checkpointing costs each engine."""
    s = {}
    for r in rows:
        s.setdefault((r["engine"], r["gc"]), []).append(r)
    tps = {k: mean([r["tokens"] / r["seconds"] for r in rs]) for k, rs in s.items()}
    rss = {k: max(r["rss_gb"] for r in rs) for k, rs in s.items()}
    lines = ["| engine, model | grad. checkpointing | trained tokens/s (each run) | mean | peak RSS GB | "
             "MLX peak GB | speed / PEFT's | RSS / PEFT's |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (engine, gc), rs in sorted(s.items(), key=lambda kv: (kv[0][1], kv[0][0] != "lmlab, float32")):
        peft = ("PEFT, float32", gc)
        mlx = max(r.get("mlx_peak_gb", 0) for r in rs)
        each = ", ".join(f"{r['tokens'] / r['seconds']:.1f}" for r in rs)
        ratio = (f"{tps[engine, gc] / tps[peft]:.2f}x | {rss[engine, gc] / rss[peft]:.2f}x" if peft in tps
                 else "- | -")
        lines.append(f"| {engine} | {'on' if gc else 'off'} | {each} | {tps[engine, gc]:.1f} | {rss[engine, gc]:.2f} | "
                     f"{f'{mlx:.2f}' if mlx else '-'} | {ratio} |")
    lines += ["", "| engine, model | tokens/s, checkpointing on / off | peak RSS GB, off → on |", "| --- | --- | --- |"]
    for engine in dict.fromkeys(e for e, _ in s):
        if (engine, True) in s and (engine, False) in s:
            lines.append(f"| {engine} | {tps[engine, True] / tps[engine, False]:.2f}x | "
                         f"{rss[engine, False]:.2f} → {rss[engine, True]:.2f} |")
    loads = [r["load"] for r in rows]
    lines += ["", f"{len(rows)} runs; load average (1 min) at their starts {min(loads):.1f}-{max(loads):.1f}."]
    return "\n".join(lines)


BEGIN, END = "<!-- bench:peft -->", "<!-- /bench:peft -->"


def write_doc(text):
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"peft_bench: {DOC} has no '{BEGIN}' ... '{END}' lines to put the table between")
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(doc[:a] + "\n" + text + "\n" + doc[b:])
    tmp.replace(DOC)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20, help="measured iterations")
    ap.add_argument("--warmup", type=int, default=2, help="iterations before the measured ones")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--no-gc", action="store_true", help="skip the gradient-checkpointing runs")
    ap.add_argument("--skip-gguf", action="store_true", help="skip lmlab's 4-bit GGUF row")
    ap.add_argument("--out", default="peft-bench.jsonl", help="each run as a JSON line (appended)")
    ap.add_argument("--table", action="store_true", help="only print the table of the runs in --out")
    ap.add_argument("--write", action="store_true", help="put the table into docs/benchmarks.md")
    ap.add_argument("--peft-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--grad-checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peft_worker:
        return peft_worker(args)
    out = Path(args.out)
    if not args.table:
        ensure_extras()
        if not (F32_DIR / "model.safetensors").exists():
            sys.exit(f"peft_bench: {F32_DIR} is missing; run scripts/make-fixtures.sh (model_golden.py makes it)")
        engines = [("lmlab, float32", lambda gc: lmlab_run(args, str(F32_DIR), gc)),
                   ("PEFT, float32", lambda gc: peft_run(args, gc))]
        if not args.skip_gguf:
            gguf = gguf_path()
            engines.insert(1, ("lmlab, Q4_1 GGUF", lambda gc: lmlab_run(args, gguf, gc)))
        for rep in range(args.reps):
            for gc in ([False] if args.no_gc else [False, True]):
                for name, fn in engines:
                    load = os.getloadavg()[0]
                    r = dict(fn(gc), engine=name, gc=gc, rep=rep, load=load)
                    print(json.dumps(r), flush=True)
                    with out.open("a") as f:
                        f.write(json.dumps(r) + "\n")
    rows = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    t = table(rows)
    print(t)
    if args.write:
        write_doc(t)


if __name__ == "__main__":
    main()

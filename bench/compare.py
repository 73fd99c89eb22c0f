"""Side-by-side generation benchmark: lmlab, mlx-lm and llama.cpp on this machine.

Same prompt (512 tokens), 128 generated tokens with EOS ignored, greedy, several
runs each; prints a table with lmlab/anchor ratios and writes it into
docs/benchmarks.md between the `bench:generate` markers.

- lmlab: the default Q4_1 GGUF (build/lmlab generate --json), with float32
  activations (the default) and with --activations q8 (int8 activations, as
  llama.cpp computes with this GGUF).
- llama.cpp (llama-cpp-python): the same GGUF file.
- mlx-lm: the 4-bit group-32 MLX copy made by tests/golden/model_golden.py
  (same engine and kernels as lmlab; its embedding is 4-bit where the GGUF's is 8-bit).

With --model gemma3-270m: Gemma 3 270M Q4_K_M (scripts/fetch-model.sh
gemma3-270m), lmlab (float and --activations q8) and llama.cpp on the same
file, runs interleaved (lmlab, lmlab q8, llama.cpp, lmlab, ...) so that a
shared machine's load falls on all alike; written between the `bench:gemma`
markers.

With --llama-native, llama.cpp is built for this machine's CPU first
(bench/llama-native.sh: its AVX-512, VNNI and BF16 where the CPU has them)
instead of the test environment's portable AVX2 build; the table's header
names the build and its CPU features either way.

Usage: .deps/py/bin/python bench/compare.py [--runs 3] [--threads 2] [--model gemma3-270m] [--llama-native]
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT_TOKENS, GEN_TOKENS = 512, 128


def default_model(name=None):
    return subprocess.run([str(ROOT / "scripts/fetch-model.sh")] + ([name] if name else []), capture_output=True,
                          text=True, check=True).stdout.strip()


def prompt_ids(model):
    from llama_cpp import Llama
    tok = Llama(model_path=model, vocab_only=True, verbose=False)
    text = (ROOT / "README.md").read_text() * 4
    ids = tok.tokenize(text.encode(), add_bos=False, special=False)[:PROMPT_TOKENS]
    return ids, tok.detokenize(ids).decode("utf-8", errors="ignore")


def run_lmlab(model, text, runs, activations="float"):
    out = []
    for _ in range(runs):
        r = subprocess.run([str(ROOT / "build/lmlab"), "generate", "--json", "--no-chat-template", "--ignore-eos",
                            "--max-tokens", str(GEN_TOKENS), "--model", model, "--activations", activations],
                           input=text, capture_output=True, text=True, check=True)
        s = json.loads(r.stdout)["stats"]
        out.append(dict(prompt_tokens=s["prompt_tokens"], prompt_tps=s["prompt_tps"],
                        generation_tps=s["generation_tps"], peak_gb=s["peak_memory_gb"], load_s=s["load_seconds"]))
    return out


def run_llamacpp(model, ids, runs, threads):
    from llama_cpp import Llama
    import numpy as np
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        llm = Llama(model_path=model, n_ctx=1024, n_threads=threads, n_batch=512, verbose=False)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        llm.eval(ids)
        tp = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_vocab = llm.n_vocab()
        for _ in range(GEN_TOKENS):
            # Logits of the last evaluated token (llama.cpp computes only that row).
            last = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            llm.eval([int(np.argmax(last))])
        tg = time.perf_counter() - t0
        out.append(dict(prompt_tokens=len(ids), prompt_tps=len(ids) / tp, generation_tps=GEN_TOKENS / tg,
                        peak_gb=float("nan"), load_s=load))
        del llm
    return out


def run_mlxlm(model_dir, ids, runs):
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import stream_generate
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model, tok = load(str(model_dir))
        load_s = time.perf_counter() - t0
        mx.reset_peak_memory()
        last = None
        for last in stream_generate(model, tok, mx.array(ids), max_tokens=GEN_TOKENS):
            pass
        out.append(dict(prompt_tokens=last.prompt_tokens, prompt_tps=last.prompt_tps,
                        generation_tps=last.generation_tps, peak_gb=last.peak_memory, load_s=load_s))
    return out


def median(rows, key):
    v = sorted(r[key] for r in rows)
    return v[len(v) // 2]


def machine():
    cpu, simd = "unknown CPU", []
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
        simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    except Exception:
        pass
    return f"{cpu} ({', '.join(simd) or 'no AVX2'}), {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def llama_build(native):
    """Which llama.cpp build runs, and the CPU features it was compiled for."""
    import llama_cpp
    info = llama_cpp.llama_print_system_info().decode(errors="ignore")
    feats = [f for f in re.findall(r"(\w+) = 1", info)
             if f in ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AVX_VNNI", "AMX_INT8", "F16C", "FMA")]
    return f"{'native' if native else 'portable'} ({', '.join(feats) or 'none listed'})"


def versions():
    from importlib.metadata import version
    return ", ".join(f"{p} {version(p)}" for p in ["mlx", "mlx-lm", "llama-cpp-python"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--model", choices=["gemma3-270m"], help="the second known model instead of the default")
    ap.add_argument("--llama-native", action="store_true",
                    help="llama.cpp built for this CPU (bench/llama-native.sh) instead of the portable test build")
    a = ap.parse_args()
    if a.llama_native:
        native = subprocess.run([str(ROOT / "bench/llama-native.sh")], capture_output=True, text=True, check=True)
        sys.path.insert(0, str(ROOT / native.stdout.strip()))
    model = default_model(a.model)
    ids, text = prompt_ids(model)
    if a.model:
        results = {"lmlab": [], "lmlab q8": [], "llama.cpp": []}
        for _ in range(a.runs):  # interleaved
            results["lmlab"] += run_lmlab(model, text, 1)
            results["lmlab q8"] += run_lmlab(model, text, 1, "q8")
            results["llama.cpp"] += run_llamacpp(model, ids, 1, a.threads)
    else:
        results = {"lmlab": run_lmlab(model, text, a.runs),
                   "lmlab q8": run_lmlab(model, text, a.runs, "q8"),
                   "llama.cpp": run_llamacpp(model, ids, a.runs, a.threads)}
        mlx_dir = ROOT / ".deps/fixtures/model/smollm2-mlx-q4"
        if mlx_dir.exists():
            results["mlx-lm"] = run_mlxlm(mlx_dir, ids, a.runs)
    keys = [("prompt_tps", "prompt tok/s"), ("generation_tps", "gen tok/s"), ("peak_gb", "peak GB"),
            ("load_s", "load s")]
    load = os.getloadavg()[0]
    lines = [f"Model: {Path(model).name}. Machine: {machine()}, load average {load:.1f} at the end. "
             f"Versions: {versions()}; llama.cpp build: {llama_build(a.llama_native)}. Median of {a.runs} runs; "
             f"prompt {results['lmlab'][0]['prompt_tokens']} tokens, {GEN_TOKENS} generated (greedy, EOS ignored). "
             f"Command: `.deps/py/bin/python bench/compare.py --runs {a.runs} --threads {a.threads}"
             + (f" --model {a.model}" if a.model else "") + (" --llama-native" if a.llama_native else "") + "`.", "",
             "| engine | " + " | ".join(k[1] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, rows in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{median(rows, k):.3f}" for k, _ in keys) + " |")
    for ours in [k for k in ("lmlab", "lmlab q8") if k in results]:
        lab = results[ours]
        for name, rows in results.items():
            if name.startswith("lmlab"):
                continue
            lines.append(f"| {ours} / {name} | " + " | ".join(
                f"{median(lab, k) / median(rows, k):.2f}×" if median(rows, k) == median(rows, k) else "–"
                for k, _ in keys) + " |")
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        doc = ROOT / "docs/benchmarks.md"
        body = doc.read_text() if doc.exists() else "# Benchmarks\n"
        tag = "bench:gemma" if a.model else "bench:generate"
        block = f"<!-- {tag} -->\n{table}\n<!-- /{tag} -->"
        if f"<!-- {tag} -->" in body:
            body = re.sub(f"<!-- {tag} -->.*<!-- /{tag} -->", lambda _: block, body, flags=re.S)
        else:
            title = "Gemma 3 270M Q4_K_M, side by side (CPU)" if a.model else "Generation, side by side (CPU)"
            body += f"\n## {title}\n\n" + block + "\n"
        doc.write_text(body)


if __name__ == "__main__":
    sys.exit(main())

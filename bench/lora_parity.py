"""Parity of `lmlab lora` with mlx_lm.lora over long runs (docs/finetuning.md,
"Parity with mlx_lm.lora"): the same checkpoint, data, YAML config and seed
through mlx-lm's own trainer (tests/golden/lora_golden.py's mlx_lm_train: its
train_model with a loss-report callback) and through the `lmlab lora` command
line with --mlx-lm-compat (mlx-lm's batch order and loss mask). Runs:

  tiny-lora   the tiny 4-bit checkpoint of the default model's layout
              (lora_golden.py's parity model), LoRA, 200 iterations of batch 4
              over 256 Super Bowl records (3.1 epochs), Adam, warm-up + cosine
  tiny-dora   the same checkpoint, DoRA, 100 iterations, AdamW
  default     the default model (SmolLM2-135M-Instruct) as its MLX 4-bit copy
              (tests/golden/model_golden.py's smollm2-mlx-q4), LoRA on the last
              16 blocks, 10 iterations of batch 2, sequences cut at 96 tokens,
              one validation batch (mlx_lm.lora is slow on a CPU)

For each: a side-by-side table of every iteration's train loss (mlx-lm,
lmlab, |diff|), the validation losses, the worst differences, the final
adapters' relative difference (max |Δ| over max |w| per tensor, worst tensor),
and then greedy generations on held-out Super Bowl questions with each
engine's adapters loaded in both engines (token ids compared).

  .deps/py/bin/python bench/lora_parity.py [--runs tiny-lora,tiny-dora,default] [--work DIR] [--write]

Results are kept in WORK/RUN/result.json; --write puts every run found there
into docs/finetuning.md."""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
from lora_golden import mlx_lm_train, parity_data  # noqa: E402

FIXTURES = Path(os.environ.get("LMLAB_FIXTURES", ROOT / ".deps" / "fixtures"))
MLX_DIR = FIXTURES / "model" / "smollm2-mlx-q4"
TINY_DIR = FIXTURES / "lora" / "model"  # lora_golden.py's parity_model
LMLAB = Path(os.environ.get("LMLAB", ROOT / "build" / "lmlab"))
DOC = ROOT / "docs" / "finetuning.md"
GREEDY_TOKENS = 24

# The tolerances. Both engines do the same float32 arithmetic in another
# summation order (BLAS GEMMs, reductions, the backward's dequantized
# matmuls): each loss differs in its last bits, and the difference compounds
# through the updates. A loss may differ by 1e-4 * (1 + |loss|). Adapters are
# compared per tensor by the norm of the difference over the norm of the
# tensor (at most 1e-2): Adam divides each coordinate's step by the root of its
# own squared-gradient average, so a coordinate whose gradient is as small as
# the rounding noise takes full-size steps in a direction set by that noise;
# those few coordinates make the largest single-element difference (also
# printed) a poor measure.
def loss_tol(loss):
    return 1e-4 * (1 + abs(loss))


ADAPTER_TOL = 1e-2


RUNS = {
    "tiny-lora": dict(
        model="tiny", n_train=256, n_valid=16, prompts=3,
        config=dict(fine_tune_type="lora", num_layers=2, iters=200, batch_size=4, learning_rate=2e-4,
                    steps_per_report=1, steps_per_eval=50, val_batches=4, max_seq_length=128,
                    mask_prompt=True, seed=7, save_every=1000,
                    lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0},
                    lr_schedule={"name": "cosine_decay", "warmup": 10, "warmup_init": 1e-5,
                                 "arguments": [2e-4, 190, 1e-5]})),
    "tiny-dora": dict(
        model="tiny", n_train=256, n_valid=16, prompts=3,
        config=dict(fine_tune_type="dora", num_layers=2, iters=100, batch_size=4, learning_rate=1e-3,
                    steps_per_report=1, steps_per_eval=50, val_batches=4, max_seq_length=128,
                    mask_prompt=True, seed=7, save_every=1000, optimizer="adamw",
                    optimizer_config={"adamw": {"weight_decay": 0.01}},
                    lora_parameters={"rank": 8, "scale": 10.0, "dropout": 0.0},
                    lr_schedule={"name": "cosine_decay", "warmup": 10, "warmup_init": 1e-5,
                                 "arguments": [1e-3, 90, 1e-5]})),
    "default": dict(
        model="default", n_train=20, n_valid=2, prompts=2,
        config=dict(fine_tune_type="lora", num_layers=16, iters=10, batch_size=2, learning_rate=1e-4,
                    steps_per_report=1, steps_per_eval=10, val_batches=1, max_seq_length=96,
                    mask_prompt=True, seed=0, save_every=1000,
                    lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0})),
}


def prepare(work, name, spec):
    """The run's folder: config.yaml (the one both engines read), its data and
    the model path."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    model = TINY_DIR if spec["model"] == "tiny" else MLX_DIR
    if not (model / "config.json").exists():
        sys.exit(f"lora_parity: {model} is missing; run scripts/make-fixtures.sh (lora_golden.py's parity_model "
                 "and model_golden.py make the two checkpoints)")
    parity_data(d / "data", spec["n_train"], spec["n_valid"])
    config = dict(spec["config"], model=str(model), data=str(d / "data"), train=True)
    (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return d, config


def run_mlx_lm(d, config):
    t = time.time()
    train, val, _ = mlx_lm_train(dict(config, adapter_path=str(d / "mlx_lm")))
    return {"train": {int(i): l for i, l, _ in train}, "val": {int(i): l for i, l in val},
            "seconds": time.time() - t}


def run_lmlab(d):
    out = d / "lmlab"
    cmd = [str(LMLAB), "lora", "-c", str(d / "config.yaml"), "--mlx-lm-compat", "--adapter-path", str(out)]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"lora_parity: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    seconds = time.time() - t
    train, val = {}, {}
    lines = (out / "train_log.csv").read_text().splitlines()
    head = lines[0].split(",")
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row["train_loss"]:
            train[int(row["iteration"])] = float(row["train_loss"])
        if row["val_loss"]:
            val[int(row["iteration"])] = float(row["val_loss"])
    peak = re.search(r"Peak memory ([\d.]+) GB \(planned ([\d.]+) GB", r.stdout)
    return {"train": train, "val": val, "seconds": seconds, "cmd": " ".join(cmd),
            "peak_gb": float(peak.group(1)) if peak else None, "planned_gb": float(peak.group(2)) if peak else None}


def adapters_difference(a_dir, b_dir):
    """Per tensor: |a - b| / |b| (Frobenius norms) and max |a - b| / max |b|;
    the worst tensor of each."""
    import mlx.core as mx
    a = mx.load(str(a_dir / "adapters.safetensors"))
    b = mx.load(str(b_dir / "adapters.safetensors"))
    if sorted(a) != sorted(b):
        sys.exit(f"lora_parity: adapter names differ: {sorted(set(a) ^ set(b))[:5]}")
    norm, norm_at, elem, elem_at = 0.0, "", 0.0, ""
    for k, v in b.items():
        n = (mx.linalg.norm((a[k] - v).flatten()) / max(1e-12, mx.linalg.norm(v.flatten()).item())).item()
        e = mx.max(mx.abs(a[k] - v)).item() / max(1e-3, mx.max(mx.abs(v)).item())
        if n > norm:
            norm, norm_at = n, k
        if e > elem:
            elem, elem_at = e, k
    return {"norm": norm, "norm_at": norm_at, "element": elem, "element_at": elem_at}


def held_out_questions(data_dir, n):
    """Validation questions the run did not train on (parity_data keeps only
    held-out records there), distinct, the first n."""
    seen, out = set(), []
    for line in (data_dir / "valid.jsonl").read_text().splitlines():
        q = json.loads(line)["prompt"]
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out[:n]


def greedy_both_ways(d, model, n):
    """Each engine's adapters in both engines: lmlab generate's greedy ids and
    mlx-lm's (generate_step from lmlab's prompt ids, the chat template applied
    by lmlab) on held-out questions."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    rows = []
    for owner in ("mlx_lm", "lmlab"):
        adapters = d / owner
        m, _ = load(str(model), adapter_path=str(adapters))
        for q in held_out_questions(d / "data", n):
            r = subprocess.run([str(LMLAB), "generate", "--model", str(model), "--adapter-path", str(adapters),
                                "--prompt", q, "--max-tokens", str(GREEDY_TOKENS), "--temp", "0", "--ignore-eos",
                                "--json"], capture_output=True, text=True, check=True)
            ours = json.loads(r.stdout)
            theirs = [int(t) for t, _ in generate_step(mx.array(ours["prompt_tokens"]), m,
                                                       max_tokens=GREEDY_TOKENS,
                                                       sampler=lambda x: mx.argmax(x, -1))]
            rows.append({"adapters": owner, "question": q, "lmlab": ours["tokens"], "mlx_lm": theirs,
                         "text": ours["text"], "equal": ours["tokens"] == theirs})
    return rows


def run(work, name):
    spec = RUNS[name]
    d, config = prepare(work, name, spec)
    print(f"== {name}: mlx_lm.lora ...", flush=True)
    theirs = run_mlx_lm(d, config)
    print(f"== {name}: lmlab lora ... ({theirs['seconds']:.0f} s for mlx-lm)", flush=True)
    ours = run_lmlab(d)
    adapters = adapters_difference(d / "lmlab", d / "mlx_lm")
    greedy = greedy_both_ways(d, config["model"], spec["prompts"])
    result = {"name": name, "config": spec["config"], "model": config["model"], "mlx_lm": theirs, "lmlab": ours,
              "adapters": adapters, "greedy": greedy,
              "versions": versions(), "date": time.strftime("%Y-%m-%d")}
    (d / "result.json").write_text(json.dumps(result, indent=1))
    return json.loads((d / "result.json").read_text())  # keys as strings, as --write reads them


def versions():
    import mlx.core as mx
    import mlx_lm
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    return {"mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "lmlab": commit}


def summary(r):
    """Worst differences, per 50-iteration window too (drift shows as growth)."""
    tr, vl = r["mlx_lm"]["train"], r["lmlab"]["train"]
    its = sorted(tr, key=int)
    diffs = {int(i): abs(vl[i] - tr[i]) for i in its if i in vl}
    missing = [i for i in its if i not in vl]
    vdiffs = {int(i): abs(r["lmlab"]["val"][i] - v) for i, v in r["mlx_lm"]["val"].items() if i in r["lmlab"]["val"]}
    over = [i for i in its if i in vl and abs(vl[i] - tr[i]) > loss_tol(tr[i])]
    over += [i for i, v in r["mlx_lm"]["val"].items()
             if i in r["lmlab"]["val"] and abs(r["lmlab"]["val"][i] - v) > loss_tol(v)]
    windows = []
    n = len(its)
    step = 50 if n > 50 else n
    for lo in range(1, n + 1, step):
        w = [diffs[i] for i in range(lo, min(n, lo + step - 1) + 1) if i in diffs]
        if w:
            windows.append((lo, min(n, lo + step - 1), max(w)))
    ok = not over and not missing and len(vdiffs) == len(r["mlx_lm"]["val"]) and r["adapters"]["norm"] < ADAPTER_TOL \
        and all(g["equal"] for g in r["greedy"])
    return {"worst_train": max(diffs.values()), "worst_train_at": max(diffs, key=diffs.get),
            "worst_val": max(vdiffs.values()) if vdiffs else float("nan"), "windows": windows, "over": over,
            "missing": missing, "ok": ok}


def report(r):
    s = summary(r)
    tr, vl = r["mlx_lm"]["train"], r["lmlab"]["train"]
    lines = [f"{r['name']}: {len(tr)} iterations; mlx_lm.lora {r['mlx_lm']['seconds']:.0f} s, "
             f"lmlab lora {r['lmlab']['seconds']:.0f} s",
             f"{'iter':>5} {'mlx-lm':>10} {'lmlab':>10} {'|diff|':>9}"]
    for i in sorted(tr, key=int):
        lines.append(f"{i:>5} {tr[i]:>10.6f} {vl.get(i, float('nan')):>10.6f} {abs(vl.get(i, float('nan')) - tr[i]):>9.2e}")
    for i, v in sorted(r["mlx_lm"]["val"].items(), key=lambda kv: int(kv[0])):
        w = r["lmlab"]["val"].get(i, float("nan"))
        lines.append(f"  validation at {i}: mlx-lm {v:.6f}, lmlab {w:.6f}, |diff| {abs(w - v):.2e}")
    lines.append(f"  worst |diff| train {s['worst_train']:.2e} (iteration {s['worst_train_at']}), "
                 f"validation {s['worst_val']:.2e}; per window: "
                 + ", ".join(f"{a}-{b} {m:.1e}" for a, b, m in s["windows"]))
    ad = r["adapters"]
    lines.append(f"  adapters: |Δ|/|w| {ad['norm']:.2e} (worst {ad['norm_at']}); largest element "
                 f"max|Δ|/max|w| {ad['element']:.2e} ({ad['element_at']})")
    eq = sum(g["equal"] for g in r["greedy"])
    lines.append(f"  greedy ids equal in both engines: {eq}/{len(r['greedy'])}")
    lines.append(f"  {'PASS' if s['ok'] else 'FAIL'}: tolerance 1e-4·(1 + |loss|) per loss, "
                 f"adapters |Δ|/|w| {ADAPTER_TOL:g}" + (f"; over it at {s['over']}" if s["over"] else ""))
    return "\n".join(lines)


BEGIN, END = "<!-- bench/lora_parity.py --write: begin -->", "<!-- bench/lora_parity.py --write: end -->"


def doc_tables(results):
    out = ["| run | iterations | worst \\|Δ train loss\\| | worst \\|Δ val loss\\| | adapters \\|Δ\\|/\\|w\\| "
           "| adapters, largest element | greedy ids equal "
           "| mlx_lm.lora | lmlab lora | within tolerance |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = summary(r)
        eq = sum(g["equal"] for g in r["greedy"])
        out.append(f"| {r['name']} | {len(r['mlx_lm']['train'])} | {s['worst_train']:.1e} (it. {s['worst_train_at']}) "
                   f"| {s['worst_val']:.1e} | {r['adapters']['norm']:.1e} | {r['adapters']['element']:.1e} "
                   f"| {eq}/{len(r['greedy'])} "
                   f"| {r['mlx_lm']['seconds']:.0f} s | {r['lmlab']['seconds']:.0f} s | {'yes' if s['ok'] else 'no'} |")
    v = results[0]["versions"]
    out += ["", f"Measured {results[0]['date']} on the 2-core machine (shared with other work), mlx {v['mlx']}, "
            f"mlx-lm {v['mlx_lm']}, lmlab at {v['lmlab']}. Worst train-loss difference per 50-iteration window "
            "(growth would be drift):", ""]
    for r in results:
        out.append(f"- {r['name']}: " + ", ".join(f"{a}-{b}: {m:.1e}" for a, b, m in summary(r)["windows"]))
    for r in results:
        if r["model"].endswith("smollm2-mlx-q4"):  # readable text; the tiny checkpoint's is noise
            out += ["", f"Greedy continuations of held-out questions in the {r['name']} run (the same ids in both "
                    "engines):", "", "| adapters | question | 24 tokens, lmlab = mlx-lm |", "| --- | --- | --- |"]
            for g in r["greedy"]:
                text = g["text"].replace("\n", " ").replace("|", "\\|")
                out.append(f"| {g['adapters']} | {g['question']} | {text} |")
    for r in results:
        tr, ours = r["mlx_lm"]["train"], r["lmlab"]["train"]
        out += ["", f"<details><summary>{r['name']}: every iteration, and the YAML both engines read</summary>", "",
                "```yaml", yaml.safe_dump(dict(r["config"], model=Path(r["model"]).name), sort_keys=False).strip(),
                "```", "", "| iteration | mlx_lm.lora | lmlab lora | \\|diff\\| |", "| --- | --- | --- | --- |"]
        for i in sorted(tr, key=int):
            out.append(f"| {i} | {tr[i]:.6f} | {ours[i]:.6f} | {abs(ours[i] - tr[i]):.1e} |")
        for i, x in sorted(r["mlx_lm"]["val"].items(), key=lambda kv: int(kv[0])):
            y = r["lmlab"]["val"][i]
            out.append(f"| validation at {i} | {x:.6f} | {y:.6f} | {abs(y - x):.1e} |")
        out += ["", "</details>"]
    return "\n".join(out)


def write_doc(results):
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"lora_parity: {DOC} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(head + BEGIN + "\n" + doc_tables(results) + "\n" + END + tail)
    tmp.replace(DOC)
    print(f"wrote {len(results)} runs into {DOC}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="tiny-lora,tiny-dora,default")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmlab-lora-parity"))
    ap.add_argument("--write", action="store_true", help="put every run in WORK into docs/finetuning.md")
    ap.add_argument("--report-only", action="store_true", help="print the runs already in WORK")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in a.runs.split(","):
        if name not in RUNS:
            sys.exit(f"lora_parity: no run {name!r} (runs: {', '.join(RUNS)})")
        f = a.work / name / "result.json"
        if a.report_only:
            if f.exists():
                results.append(json.loads(f.read_text()))
            continue
        results.append(run(a.work, name))
        print(report(results[-1]), flush=True)
    if a.report_only:
        for r in results:
            print(report(r))
    if a.write:
        write_doc([json.loads((a.work / n / "result.json").read_text())
                   for n in RUNS if (a.work / n / "result.json").exists()])
    failed = [r["name"] for r in results if not summary(r)["ok"]]
    if failed:
        print(f"lora_parity: outside the tolerance: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

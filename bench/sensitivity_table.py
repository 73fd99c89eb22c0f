"""The recipe comparison of docs/sensitivity.md: reads the *.convert.json and
*.ppl.json files bench/sensitivity.sh leaves in its work folder and prints a
markdown table, each mlx-lm recipe next to the atlas recipe at its bits per weight."""
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
rows = []
for conv in sorted(work.glob("*.convert.json")):
    name = conv.name[: -len(".convert.json")]
    ppl = work / f"{name}.ppl.json"
    if not ppl.exists():
        continue
    c, k = json.loads(conv.read_text()), json.loads(ppl.read_text())["comparison"]
    rows.append((name, c, k))

print("| recipe | bits/weight | PPL | PPL (float32) | KL mean (nats) ± se | KL median | KL p99 | same top-1 % (95% CI) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
order = lambda r: (r[0].removeprefix("atlas-as-"), r[0].startswith("atlas-as-"))
for name, c, k in sorted(rows, key=order):
    kl, t = k["kl"], k["top1"]
    print(f"| {name} | {c['bits_per_weight']:.3f} | {k['model']['ppl']:.4f} | {k['reference']['ppl']:.4f} | "
          f"{kl['mean']:.5f} ± {kl['se']:.5f} | {kl['median']:.5f} | {kl['p99']:.4f} | "
          f"{100 * t['agreement']:.2f} ({100 * t['ci95'][0]:.2f}–{100 * t['ci95'][1]:.2f}) |")
scored = rows[0][2]["model"]["scored"] if rows else 0
print(f"\n{scored} tokens scored per model; KL(float32 ‖ quantized) per token.")

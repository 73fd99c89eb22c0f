"""The recipe comparison of docs/sensitivity.md: reads the *.convert.json and
*.ppl.json files bench/sensitivity.sh leaves in its work folder and prints a
markdown table, the models ordered by bits per weight."""
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
rows = []
for conv in sorted(work.glob("*.convert.json")):
    name = conv.name[: -len(".convert.json")]
    ppl = work / f"{name}.ppl.json"
    if not ppl.exists() or ppl.stat().st_size == 0:  # missing, or still being written
        continue
    c, k = json.loads(conv.read_text()), json.loads(ppl.read_text())["comparison"]
    bits = sorted({m["bits"] for m in c["modules"].values()}) if isinstance(c.get("modules"), dict) else []
    rows.append((name, c, k, bits))

print("| model | recipe | bits used | bits/weight | PPL | KL mean (nats) ± se | KL median | KL p99 | same top-1 % (95% CI) |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, c, k, bits in sorted(rows, key=lambda r: (-r[1]["bits_per_weight"], r[0])):
    kl, t = k["kl"], k["top1"]
    print(f"| {name} | {c['recipe']} | {'/'.join(map(str, bits))} | {c['bits_per_weight']:.3f} | {k['model']['ppl']:.4f} | "
          f"{kl['mean']:.5f} ± {kl['se']:.5f} | {kl['median']:.5f} | {kl['p99']:.4f} | "
          f"{100 * t['agreement']:.2f} ({100 * t['ci95'][0]:.2f}–{100 * t['ci95'][1]:.2f}) |")
if rows:
    k = rows[0][2]
    print(f"\n{k['model']['scored']} tokens scored per model; float32 reference PPL {k['reference']['ppl']:.4f}; "
          "KL(float32 ‖ quantized) per token.")

#!/usr/bin/env bash
# The WikiSQL acceptance run (docs/finetuning.md): LoRA on the default model
# over ../shared/data/wikisql (text records, MLX's own LoRA example), with the
# test loss and perplexity of the base model before and of the adapters after,
# the train/validation loss curve (OUT/adapters/loss_curve.svg) and greedy SQL
# for a few held-out test questions before and after.
#
#   bench/wikisql.sh [OUT]    # OUT defaults to wikisql-run (must not exist)
#
# ITERS (200), BATCH (4), LR (1e-4), TEST_BATCHES (25: the whole test split)
# and SAMPLES (3 test questions) override the settings.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-wikisql-run}
LMLAB=${LMLAB:-build/lmlab}
PY=${PY:-.deps/py/bin/python}
DATA=../shared/data/wikisql
ITERS=${ITERS:-200} BATCH=${BATCH:-4} LR=${LR:-1e-4} TEST_BATCHES=${TEST_BATCHES:-25} SAMPLES=${SAMPLES:-3}
[ -e "$OUT" ] && { echo "wikisql.sh: $OUT already exists; give another folder" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG() { tr '\r' '\n' | grep -v '^\s*$' | tee -a "$OUT/$1"; }

# Before: the base model on the test split (no adapters).
"$LMLAB" lora --data "$DATA" --test --test-batches "$TEST_BATCHES" --batch-size "$BATCH" --adapter-path "" 2>&1 \
  | LOG before.log
/usr/bin/time -f "training wall %e s, max RSS %M KB" "$LMLAB" lora --train --data "$DATA" --iters "$ITERS" \
  --batch-size "$BATCH" --num-layers 16 --learning-rate "$LR" --lr-schedule cosine_decay --warmup 10 \
  --steps-per-report 10 --steps-per-eval 50 --val-batches 10 --save-every 50 --seed 0 \
  --test --test-batches "$TEST_BATCHES" --adapter-path "$OUT/adapters" 2>&1 | LOG train.log

# Samples: the first SAMPLES distinct test questions, prompted up to "A:",
# greedy, the base model and the adapted one; the reference SQL beside them.
"$PY" - "$DATA/test.jsonl" "$SAMPLES" > "$OUT/prompts.tsv" <<'PYEOF'
import json, sys
seen, n = set(), int(sys.argv[2])
for line in open(sys.argv[1]):
    text = json.loads(line)["text"]
    prompt, answer = text.rsplit("\nA: ", 1)
    if prompt in seen: continue
    seen.add(prompt)
    print(json.dumps(prompt + "\nA:"), json.dumps(answer), sep="\t")
    if len(seen) == n: break
PYEOF
while IFS=$'\t' read -r prompt answer; do
  p=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1]), end="")' "$prompt")
  for which in before after; do
    extra=(); [ "$which" = after ] && extra=(--adapter-path "$OUT/adapters")
    "$LMLAB" generate --no-chat-template --prompt "$p" --max-tokens 40 --temp 0 --json "${extra[@]}" \
      > "$OUT/gen.json"
    "$PY" -c 'import json,sys; t=json.load(open(sys.argv[1]))["text"]; print(sys.argv[2], json.dumps(t.strip().split("\n")[0]))' \
      "$OUT/gen.json" "$which" | tee -a "$OUT/samples.log"
  done
  echo "reference $answer" | tee -a "$OUT/samples.log"
  echo "question $(echo "$prompt" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read()).split(chr(10))[2])')" \
    | tee -a "$OUT/samples.log"
done < "$OUT/prompts.tsv"
rm -f "$OUT/gen.json"
cp "$OUT/adapters/loss_curve.svg" docs/img/wikisql-loss.svg 2>/dev/null || true

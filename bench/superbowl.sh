#!/usr/bin/env bash
# The Super Bowl LIX acceptance run (docs/finetuning.md): LoRA on the default
# model with prompt masking over ../shared/data/superbowl, then the held-out
# metric (bench/superbowl_eval.py) before training, with the adapters, through
# the fused model directory, and through the exported GGUF in llama.cpp.
#
#   bench/superbowl.sh [OUT]    # OUT defaults to superbowl-run (must not exist)
#
# ITERS (200), BATCH (2) and LR (2e-4) override the training settings.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-superbowl-run}
LMLAB=${LMLAB:-build/lmlab}
PY=${PY:-.deps/py/bin/python}
TOKENIZER=${LMLAB_FIXTURES:-.deps/fixtures}/lora/tokenizer  # SmolLM2's tokenizer.json, for the fused directory
ITERS=${ITERS:-200} BATCH=${BATCH:-2} LR=${LR:-2e-4}
[ -e "$OUT" ] && { echo "superbowl.sh: $OUT already exists; give another folder" >&2; exit 2; }
[ -f "$TOKENIZER/tokenizer.json" ] || { echo "superbowl.sh: $TOKENIZER has no tokenizer.json; run scripts/make-fixtures.sh" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LMLAB=$(realpath "$LMLAB")
EVAL="$PY $(pwd)/bench/superbowl_eval.py"

(cd "$OUT" && $EVAL before lmlab "$LMLAB")
/usr/bin/time -f "training wall %e s, max RSS %M KB" "$LMLAB" lora --data ../shared/data/superbowl --mask-prompt \
  --batch-size "$BATCH" --iters "$ITERS" --learning-rate "$LR" --lr-schedule cosine_decay --warmup 10 \
  --max-seq-length 512 --steps-per-report 10 --steps-per-eval 100 --val-batches 10 --save-every 100 --seed 0 \
  --adapter-path "$OUT/adapters" 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tee "$OUT/train.log"
"$LMLAB" fuse --adapter-path "$OUT/adapters" --save-path "$OUT/fused" --tokenizer "$TOKENIZER"
"$LMLAB" fuse --adapter-path "$OUT/adapters" --export-gguf "$OUT/fused.gguf"
(cd "$OUT" && $EVAL adapter lmlab "$LMLAB" --adapter-path "$OUT/adapters")
(cd "$OUT" && $EVAL fused lmlab "$LMLAB" --model "$OUT/fused")
(cd "$OUT" && $EVAL gguf-llama.cpp llama.cpp "$OUT/fused.gguf")

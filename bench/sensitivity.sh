#!/usr/bin/env bash
# The runs behind docs/sensitivity.md: the seed notebook's lm_head shift
# experiment on the default model in two layouts, a bisection for its tipping
# point, the sensitivity atlas, and uniform / mixed / atlas quantization
# recipes compared at equal bits per weight with `lmlab ppl`.
# Reports land in docs/sensitivity/ (small: markdown, CSV, JSON, SVG); the
# converted models in $WORK (default /tmp/lmlab-sensitivity), which is not kept.
#   bench/sensitivity.sh [seed|bisect|atlas|recipes|all]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/lmlab}
WORK=${WORK:-/tmp/lmlab-sensitivity}
OUT=docs/sensitivity
GGUF=$(scripts/fetch-model.sh)
# A GGUF carries no tokenizer.json; mlx_lm needs one in every directory convert
# writes. make test's fixtures hold the default model's (written by the gguf package).
TOK=${TOK:-.deps/fixtures/model/smollm2-f32}
F32=${F32:-.deps/fixtures/model/smollm2-f32.gguf}
TEXT=$WORK/superbowl-valid.jsonl
mkdir -p "$WORK" "$OUT"
[ -f "$TEXT" ] || head -n 40 ../shared/data/superbowl/valid.jsonl > "$TEXT"
what=${1:-all}

q4() {  # the default model in MLX 4-bit group-64 layout, made by convert from the GGUF
  [ -d "$WORK/smollm2-q4-g64" ] || $B convert -m "$GGUF" --tokenizer "$TOK" -q --q-bits 4 --q-group-size 64 \
    --dtype float16 -o "$WORK/smollm2-q4-g64"
}

if [[ $what == seed || $what == all ]]; then
  q4
  # The seed's shift list, "What is 2+2?", 10 greedy tokens, on an untied head as the seed's was
  # (the head is tied on this model): in MLX 4-bit g64 layout, and in the GGUF's own (Q8_0 head).
  $B sweep shift-words lm_head -m "$WORK/smollm2-q4-g64" --untie -o "$OUT/seed-mlx-q4-g64-untied" --restart
  $B sweep shift-words lm_head -m "$GGUF" --untie -o "$OUT/seed-gguf-q8_0-untied" --restart
fi

if [[ $what == bisect || $what == all ]]; then
  # Where the GGUF's head stops being healthy between shift 1 (healthy) and 1e6 (dead).
  $B sweep shift-words lm_head -m "$GGUF" --untie --bisect 1:1000000 --resolution 1 \
    --until 'status>=degraded' -o "$OUT/bisect-gguf-q8_0-untied" --restart
fi

if [[ $what == atlas || $what == all ]]; then
  # Noise of one quantization step (sigma) on every tensor of the GGUF as loaded.
  /usr/bin/time -v $B sweep --atlas --atlas-mode noise --level 1 -m "$GGUF" -o "$OUT/atlas-noise" 2> "$WORK/atlas-noise.time"
  grep -E 'Elapsed|User time|System time|Maximum resident' "$WORK/atlas-noise.time"
fi
rm -f "$OUT"/*/sweep-state.json  # the resume state is not part of a report

if [[ $what == recipes || $what == all ]]; then
  # Every recipe quantizes the float32 copy of the default model (its GGUF dequantized: the only
  # float version there is); that copy is the reference. All at group 64, mlx-lm's default.
  FLOAT=$WORK/smollm2-f32-mlx
  [ -d "$FLOAT" ] || $B convert -m "$F32" --tokenizer "$TOK" -d --dtype float32 -o "$FLOAT"
  # The atlas the recipe reads: every tensor re-quantized to 3 bits, group 64, in turn.
  [ -f "$WORK/atlas-f32/atlas.json" ] || /usr/bin/time -v $B sweep --atlas --atlas-mode requantize --bits 3 \
    --group-size 64 -m "$FLOAT" -o "$WORK/atlas-f32" 2> "$WORK/atlas-f32.time"
  mkdir -p "$OUT/atlas-requantize-3bit-f32" && cp "$WORK/atlas-f32/atlas".{md,json,svg} "$OUT/atlas-requantize-3bit-f32/"
  run() {  # name, convert flags...
    local name=$1; shift
    [ -s "$WORK/$name.ppl.json" ] && return 0
    rm -rf "$WORK/$name"
    $B convert -m "$FLOAT" --dtype float16 -o "$WORK/$name" "$@" --json > "$WORK/$name.convert.json"
    $B ppl -m "$WORK/$name" --reference "$FLOAT" --text "$TEXT" --context 512 --stride 256 --tokens 4096 --json \
      > "$WORK/$name.ppl.tmp" && mv "$WORK/$name.ppl.tmp" "$WORK/$name.ppl.json"
  }
  bpw() { .deps/py/bin/python -c "import json;print(json.load(open('$WORK/$1.convert.json'))['bits_per_weight'])"; }
  # Each uniform or mlx-lm recipe, then the atlas recipe at its bits per weight. No mixed recipe
  # lands within 0.05 bits per weight of a uniform one on this model (group 128 does not divide
  # its 576-wide rows, so mlx-lm leaves those modules dense).
  atlas() { run "atlas-as-$1" -q --recipe atlas --atlas "$WORK/atlas-f32/atlas.json" --target-bpw "$(bpw "$1")" --q-group-size 64; }
  run uniform-q4-g64 -q --q-bits 4 --q-group-size 64 && atlas uniform-q4-g64
  run mixed_3_6-g64 -q --recipe mixed_3_6 --q-group-size 64 && atlas mixed_3_6-g64
  if [[ ${ALL_RECIPES:-0} == 1 ]]; then  # not in docs/sensitivity.md yet: 7 more minutes each on 2 cores
    run uniform-q3-g64 -q --q-bits 3 --q-group-size 64 && atlas uniform-q3-g64
    run mixed_4_6-g64 -q --recipe mixed_4_6 --q-group-size 64 && atlas mixed_4_6-g64
  fi
  .deps/py/bin/python bench/sensitivity_table.py "$WORK" > "$OUT/recipes.md"
  cat "$OUT/recipes.md"
fi

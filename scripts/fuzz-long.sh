#!/usr/bin/env bash
# The long fuzzing runs kept outside CI: each target of `make fuzz` for
# RUNS executions (default 10 million), one after another, at the lowest CPU
# priority, from the repository's seeds plus the corpus earlier runs grew.
# Prints one line per target: executions, time, corpus size, findings.
# Usage: scripts/fuzz-long.sh [target...]   (after `make fuzz`; RUNS=N to change)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer chat_template gguf safetensors config)
mkdir -p build-fuzz/long
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  log="build-fuzz/long/$t.log"
  start=$(date +%s)
  status=0
  nice -n 19 "build-fuzz/${t}_fuzz" -runs="$RUNS" -seed=2 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="build-fuzz/long/$t-" -print_final_stats=1 \
    "build-fuzz/corpus/$t" "tests/fuzz/seeds/$t" > "$log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  corpus=$(ls "build-fuzz/corpus/$t" | wc -l)
  findings=$(ls build-fuzz/long/"$t"-* 2>/dev/null | wc -l)
  echo "$t: ${execs} executions in ${secs} s, corpus ${corpus} inputs, ${findings} findings, exit ${status}"
done

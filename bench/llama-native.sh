#!/bin/bash
# Builds llama.cpp for this machine's CPU (AVX-512, its VNNI and BF16, AVX-VNNI
# where the CPU has them) as the pinned llama-cpp-python, into
# .deps/bench/llama-native-TAG (TAG: the CPU's model and flags), for
# side-by-side runs:
#   bench/llama-native.sh             # prints the folder (builds it the first time)
#   .deps/py/bin/python bench/compare.py --llama-native ...
# The test environment's llama-cpp-python is a portable AVX2 build (the
# oracles need the same numbers on every CI machine); a ratio against it
# understates llama.cpp on a CPU with wider vectors. The instruction sets
# are named from /proc/cpuinfo rather than -march=native, to leave out AMX:
# llama-cpp-python 0.3.36's AMX matmul crashed (SIGSEGV in
# ggml_backend_amx_mul_mat) on a Sapphire Rapids VM on its first prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
spec=""
for p in "${PY_TEST_PKGS[@]}"; do case "$p" in llama-cpp-python==*) spec=$p ;; esac; done
[ -n "$spec" ] || { echo "llama-native: no llama-cpp-python pin in scripts/versions.sh" >&2; exit 1; }
cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
flags=$(sed -n 's/^flags\s*:\s*//p' /proc/cpuinfo | head -1)
tag=$(printf '%s\n%s\n%s' "$cpu" "$flags" "$spec" | sha256sum | cut -c1-12)
dir=.deps/bench/llama-native-$tag
if [ ! -f "$dir/.built" ]; then
  [ -x .deps/py/bin/pip ] || { echo "llama-native: run 'make setup-test' first (.deps/py)" >&2; exit 1; }
  echo "llama-native: building $spec for '$cpu' in $dir (several minutes)" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  isa="-DGGML_NATIVE=OFF"
  has() { [[ " $flags " == *" $1 "* ]]; }
  for f in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
           avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    has "${f%%:*}" && isa+=" -DGGML_${f#*:}=ON" || isa+=" -DGGML_${f#*:}=OFF"
  done
  echo "llama-native: $isa" >&2
  CMAKE_ARGS="$isa -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    .deps/py/bin/pip install -q --disable-pip-version-check --no-cache-dir --no-deps --no-binary llama-cpp-python \
      --target "$dir" "$spec" >&2
  printf '%s\n' "$cpu" > "$dir/.built"
fi
echo "$dir"

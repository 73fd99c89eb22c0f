#!/usr/bin/env bash
# Installs everything lmlab needs to build and test, idempotently:
#   Debian -dev packages (apt, skipped when present), the pinned MLX backend wheel
#   into .deps/mlx-prefix, and (with --test) the test-only Python env in .deps/py.
# Usage: scripts/setup.sh [--test] [--backend cpu|cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh

want_test=0
backend=${LMLAB_BACKEND:-cpu}
while [ $# -gt 0 ]; do
  case "$1" in
    --test) want_test=1 ;;
    --backend) backend=$2; shift ;;
    *) echo "setup: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

apt_pkgs=(build-essential cmake pkg-config git xz-utils curl ca-certificates
  python3 python3-venv python3-pip
  nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libutf8proc-dev
  libyaml-cpp-dev libcpp-httplib-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libjs-chart.js libopenblas-dev)

# Test-only: clang and its libFuzzer runtime for the fuzz targets; Chromium
# and its WebDriver for the web lab's browser tests.
[ "$want_test" = 1 ] && apt_pkgs+=(clang-14 libclang-rt-14-dev chromium chromium-driver)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# MLX backend wheel into a project-local prefix (find_package(MLX CONFIG) looks here).
case "$backend" in
  cpu) wheel="mlx-cpu==${MLX_VERSION}" ;;
  cuda) wheel="mlx-cuda-13==${MLX_VERSION}" ;;
  metal) wheel="mlx-metal==${MLX_VERSION}" ;;
  *) echo "setup: unknown backend '$backend' (cpu, cuda, metal)" >&2; exit 2 ;;
esac
prefix=".deps/mlx-${backend}"
stamp="$prefix/.installed-${MLX_VERSION}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing $wheel into $prefix"
  rm -rf "$prefix"
  # The CUDA wheel's runtime libraries (cuBLAS, cuDNN, NCCL, NVRTC: several GB of
  # nvidia-* wheels) are needed only where lmlab runs on a GPU, not to build it.
  nodeps=()
  [ "$backend" = cuda ] && nodeps=(--no-deps)
  python3 -m pip install -q --disable-pip-version-check --no-compile "${nodeps[@]}" --target "$prefix" "$wheel"
  touch "$stamp"
fi

if [ "$want_test" = 1 ]; then
  py=.deps/py
  stamp="$py/.installed-${PYENV_STAMP}"
  if [ ! -f "$stamp" ]; then
    echo "setup: building the test-only Python env in $py (first time: several minutes)"
    rm -rf "$py"
    python3 -m venv "$py"
    "$py/bin/pip" install -q --disable-pip-version-check --upgrade pip
    # llama-cpp-python builds llama.cpp from source: portable CPU build, all cores,
    # without the multimodal library (mtmd) the oracles never load.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$py/bin/pip" install -q --disable-pip-version-check "${PY_TEST_PKGS[@]}"
    touch "$stamp"
  fi
fi

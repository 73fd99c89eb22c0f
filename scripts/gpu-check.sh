#!/bin/bash
# Runs on a GPU machine with the CUDA build carried over (see docs/gpu.md):
# reassembles libmlx (CUDA) and the model from parts in /tmp/parts, then runs
# generation and the core checks on the GPU. Usage: scripts/gpu-check.sh RUN_DIR
# (RUN_DIR holds lmlab, lmlab_tests, lib/ and fixtures/; MLX headers for NVRTC
# must be at /tmp/mlx/mlx/include).
set -u
cd /tmp/parts && for f in $(awk '{print $2}' MANIFEST); do cat "$f".part-* > "$f"; done && sha256sum -c MANIFEST || exit 1
mkdir -p /tmp/mlx/mlx/lib /tmp/home/models && mv /tmp/parts/libmlx.so /tmp/mlx/mlx/lib/
mv /tmp/parts/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/home/models/ && touch /tmp/home/models/SmolLM2-135M-Instruct.Q4_1.gguf.sha256-ok
R=$1
NV=$(find / -path /proc -prune -o -type d -path '*site-packages/nvidia/*/lib' -print 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH=/tmp/mlx/mlx/lib:$R/lib:$NV${LD_LIBRARY_PATH:-}
export LMLAB_HOME=/tmp/home LMLAB_FIXTURES=$R/fixtures LMLAB_TEST_DEVICE=gpu MLX_ENABLE_TF32=0 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "== generate on GPU"
$R/lmlab generate --device gpu --verbose -p "What is the capital of France?" --max-tokens 48
echo "== generate on GPU, 512-token prompt, 128 tokens"
python3 -c "print('The history of science is long. ' * 80)" > /tmp/long.txt
$R/lmlab generate --device gpu --no-chat-template --ignore-eos --max-tokens 128 --json < /tmp/long.txt | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['stats'])"
$R/lmlab generate --device cpu --no-chat-template --ignore-eos --max-tokens 32 --json < /tmp/long.txt | python3 -c "import json,sys; d=json.load(sys.stdin); print('cpu', d['stats'])"
echo "== core checks on GPU"
$R/lmlab_tests --gtest_filter='Tiny*:Gguf*:ModelDir*:Sampler*:Rope*:StopStrings*' 2>&1 | grep -vE '^\[ (RUN|      OK) ' | tail -40

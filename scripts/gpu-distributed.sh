#!/bin/bash
# Tensor-parallel inference and data-parallel LoRA on NVIDIA GPUs over MLX's
# NCCL backend, on a machine with two GPUs and the CUDA build carried over
# (docs/gpu.md, docs/distributed.md).
# Each measurement is one step; a short table is printed last.
#
#   scripts/gpu-distributed.sh RUN_DIR
#
# RUN_DIR holds lmlab (the CUDA build), lib/ (its non-system shared libraries)
# and tokenizer/ (the Llama 3 tokenizer), as gpu-check.sh unpacks gpu-pack.sh's
# archive into /tmp/lmlab-gpu, plus make_models.py (../shared/tools/gpu-bench/). Expected elsewhere, as
# gpu-check.sh and the gpu-bench calls lay them out:
#   /tmp/mlx/mlx/lib/libmlx.so and /tmp/mlx/mlx/include  (MLX CUDA, headers for NVRTC)
#   /tmp/home/models/SmolLM2-135M-Instruct.Q4_1.gguf     (the default model)
#   SITE (default /tmp/site): mlx, mlx-cuda-13 and mlx-lm wheels installed with
#     pip --target, to build the 8B-shaped model and to run mlx-lm's own sharded
#     generation beside lmlab's.
# NCCL_NVLS_ENABLE=0 is exported here and set again by lmlab launch for every rank.
set -u
R=${1:?usage: scripts/gpu-distributed.sh RUN_DIR}
SITE=${SITE:-/tmp/site}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 PYTHONPATH=$SITE LMLAB_HOME=/tmp/home MLX_ENABLE_TF32=0
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NV=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -type d -path '*site-packages/nvidia/*/lib' -print 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH=/tmp/mlx/mlx/lib:$R/lib:$SITE/mlx/lib:$NV${LD_LIBRARY_PATH:-}
L=$R/lmlab
OUT=${OUT:-/tmp/dist-out}
mkdir -p "$OUT" /tmp/m
ROWS=$OUT/rows.tsv
: > "$ROWS"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$ROWS"; }
stats() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); s=d['stats']; print(f\"{s['prompt_tps']:.1f} {s['generation_tps']:.1f} {s['peak_memory_gb']:.2f}\")" "$1"; }
same_tokens() { python3 -c "import json,sys; a=json.load(open(sys.argv[1]))['tokens']; b=json.load(open(sys.argv[2]))['tokens']; print('identical' if a==b else f'DIFFER at {next(i for i,(x,y) in enumerate(zip(a,b)) if x!=y) if any(x!=y for x,y in zip(a,b)) else min(len(a),len(b))}')" "$1" "$2"; }

echo "== machine"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
nvidia-smi topo -m 2>/dev/null | head -4
ngpu=$(nvidia-smi -L | wc -l)
[ "$ngpu" -ge 2 ] || { echo "needs 2 GPUs, found $ngpu"; exit 1; }
$L --version

echo "== step 1: the NCCL group forms (2 ranks, one GPU each; --dry-run shows the environment)"
$L launch -n 2 --backend nccl --dry-run -- $L generate -p hi
timeout 300 $L launch -n 2 --backend nccl --verbose -- $L generate --device gpu -p "What is the capital of France?" \
  --max-tokens 16 --verbose > $OUT/hello.txt 2> $OUT/hello.err
echo "rc=$?"; cat $OUT/hello.txt; tail -5 $OUT/hello.err

echo "== step 2: greedy output of 2 GPUs equals 1 GPU's (default model; float32 with TF32 off, then float16)"
P="Explain in three sentences why the sky is blue."
for dt in float32 float16; do
  timeout 300 $L generate --device gpu --dtype $dt -p "$P" --max-tokens 96 --ignore-eos --json > $OUT/one_$dt.json
  timeout 300 $L launch -n 2 --backend nccl -- $L generate --device gpu --dtype $dt -p "$P" --max-tokens 96 \
    --ignore-eos --json > $OUT/two_$dt.json 2> $OUT/two_$dt.err
  row "greedy 96 tokens, default model, $dt" "1 vs 2 GPUs" "$(same_tokens $OUT/one_$dt.json $OUT/two_$dt.json)" "-"
done
python3 -c "import json; print(json.load(open('$OUT/two_float32.json'))['text'][:300])"

echo "== step 3: the 8B-shaped 4-bit model (random weights, Llama-3-8B shape, group 64)"
M8=/tmp/m/llama8b-4bit
[ -f $M8/config.json ] || TOK_DIR=${TOK_DIR:-$R/tokenizer} python3 $R/make_models.py mlx $M8 llama8b 2>&1 | tail -2
python3 -c "print('The history of science is long. ' * 73, end='')" > /tmp/prompt512.txt
# Warm-up: MLX compiles its CUDA kernels at first use (NVRTC); both layouts, so the cache holds both.
timeout 600 $L generate --device gpu -m $M8 --no-chat-template --ignore-eos --max-tokens 8 --json < /tmp/prompt512.txt > /dev/null
timeout 600 $L launch -n 2 --backend nccl -- $L generate --device gpu -m $M8 --no-chat-template --ignore-eos \
  --max-tokens 8 --json < /tmp/prompt512.txt > /dev/null

echo "== step 4: decode tok/s, 512-token prompt, 128 tokens, EOS ignored, 3 runs each (interleaved)"
for run in 1 2 3; do
  timeout 300 $L generate --device gpu -m $M8 --no-chat-template --ignore-eos --max-tokens 128 --json \
    < /tmp/prompt512.txt > $OUT/8b_1gpu_$run.json
  timeout 300 $L launch -n 2 --backend nccl --verbose -- $L generate --device gpu -m $M8 --no-chat-template \
    --ignore-eos --max-tokens 128 --json < /tmp/prompt512.txt > $OUT/8b_2gpu_$run.json 2> $OUT/8b_2gpu_$run.err
  echo "run $run: 1 GPU $(stats $OUT/8b_1gpu_$run.json) | 2 GPUs $(stats $OUT/8b_2gpu_$run.json)  (prompt tok/s, gen tok/s, peak GB)"
done
med() { ls $OUT/8b_$1_*.json | xargs -n1 -I{} python3 -c "import json; print(json.load(open('{}'))['stats']['$2'])" | sort -g | sed -n 2p; }
row "lmlab decode tok/s, 8B 4-bit" "1 GPU" "$(med 1gpu generation_tps)" "prompt $(med 1gpu prompt_tps) tok/s, peak $(med 1gpu peak_memory_gb) GB"
row "lmlab decode tok/s, 8B 4-bit" "2 GPUs" "$(med 2gpu generation_tps)" "prompt $(med 2gpu prompt_tps) tok/s, rank 0 peak $(med 2gpu peak_memory_gb) GB"
same8=$(same_tokens $OUT/8b_1gpu_1.json $OUT/8b_2gpu_1.json)
row "greedy 128 tokens, 8B random weights, float16" "1 vs 2 GPUs" "$same8" "random weights: near-ties, a late difference is float16 rounding"

echo "== step 5: mlx-lm's own sharded generation beside it (mlx.launch, NCCL), same model and prompt"
cat > /tmp/mlxlm_sharded.py <<'EOF'
import json, sys, time
import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.utils import sharded_load
group = mx.distributed.init()
model, tok = sharded_load(sys.argv[1], tensor_group=group if group.size() > 1 else None)
tok._eos_token_ids = set()
ids = tok.encode(open(sys.argv[2]).read())
last = None
for r in stream_generate(model, tok, ids, max_tokens=int(sys.argv[3])):
    last = r
if group.rank() == 0:
    print(json.dumps({"prompt_tps": last.prompt_tps, "generation_tps": last.generation_tps,
                      "peak_memory": last.peak_memory}))
EOF
if python3 -c "import mlx_lm" 2>/dev/null; then
  for n in 1 2; do
    for run in 1 2; do
      if [ $n = 1 ]; then timeout 600 python3 /tmp/mlxlm_sharded.py $M8 /tmp/prompt512.txt 128 > $OUT/mlxlm_${n}_$run.json 2> $OUT/mlxlm_$n.err
      else timeout 600 python3 -m mlx._distributed_utils.launch --backend nccl -n 2 --env NCCL_NVLS_ENABLE=0 \
        /tmp/mlxlm_sharded.py $M8 /tmp/prompt512.txt 128 > $OUT/mlxlm_${n}_$run.json 2> $OUT/mlxlm_$n.err; fi
    done
    tps=$(python3 -c "import json; print(json.load(open('$OUT/mlxlm_${n}_2.json'))['generation_tps'])" 2>/dev/null || echo "failed: $(tail -1 $OUT/mlxlm_$n.err)")
    row "mlx-lm decode tok/s, 8B 4-bit (second run)" "$n GPU" "$tps" "sharded_load + stream_generate"
  done
else
  row "mlx-lm decode tok/s" "-" "not run" "mlx_lm is not importable from $SITE"
fi

echo "== step 6: LoRA training tokens/s on 1 and 2 GPUs (data parallel: the same combined batch of 8)"
if $L lora --help > /dev/null 2>&1; then
  python3 - <<'EOF'
import json, random
random.seed(0)
words = "the a of to and in is it that for on with as was at by an be this from".split()
with open("/tmp/lora-train.jsonl", "w") as f:
    for _ in range(512):
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(400))}) + "\n")
EOF
  mkdir -p /tmp/lora-data && cp /tmp/lora-train.jsonl /tmp/lora-data/train.jsonl && head -32 /tmp/lora-train.jsonl > /tmp/lora-data/valid.jsonl
  LA="lora --device gpu --model $M8 --train --data /tmp/lora-data --iters 30 --batch-size 8 --max-seq-length 512
      --steps-per-report 10 --steps-per-eval 1000 --val-batches 2 --save-every 1000 --seed 0"
  rm -rf /tmp/adapters-1 /tmp/adapters-2
  timeout 600 $L $LA --adapter-path /tmp/adapters-1 > $OUT/lora_1.txt 2>&1; rc1=$?
  timeout 600 $L launch -n 2 --backend nccl -- $L $LA --adapter-path /tmp/adapters-2 > $OUT/lora_2.txt 2>&1; rc2=$?
  # The last report (iterations 21-30) leaves the first steps' warm-up out.
  row "lmlab lora tokens/s, 8B 4-bit, batch 8" "1 GPU" "$(grep -oE 'Tokens/sec [0-9.]+' $OUT/lora_1.txt | tail -1)" "rc=$rc1"
  row "lmlab lora tokens/s, 8B 4-bit, batch 8" "2 GPUs" "$(grep -oE 'Tokens/sec [0-9.]+' $OUT/lora_2.txt | tail -1)" "rc=$rc2; 4 per GPU, token-weighted all-sum"
  # Two ranks train as one process on the combined batch: the same losses.
  diff=$(python3 -c "import re,sys; a,b=[[float(x) for x in re.findall(r'Train loss ([0-9.]+)', open(f).read())] for f in sys.argv[1:]]; print(f'max |diff| {max(abs(x-y) for x,y in zip(a,b)):.4f} over {len(a)} reports' if a and len(a)==len(b) else 'missing')" $OUT/lora_1.txt $OUT/lora_2.txt)
  row "lmlab lora train losses, 2 GPUs vs 1" "1 vs 2" "$diff" "printed to 3 decimals"
else
  row "lmlab lora tokens/s" "1 and 2 GPUs" "not run" "this build has no lmlab lora"
fi

echo "== table"
column -t -s $'\t' "$ROWS"

#!/bin/bash
# Runs on a GPU machine with the CUDA build carried over (see docs/gpu.md).
#   scripts/gpu-check.sh PARTS_DIR [checks|step|bench|all|profile|models|host|lora]
# PARTS_DIR holds the parts made by scripts/gpu-pack.sh (MANIFEST + *.part-*):
# lmlab-cuda.tar.xz (lmlab, lmlab_tests, lib/, fixtures/, MLX headers for NVRTC,
# the Llama 3 tokenizer) and the default model. `checks` runs the GPU core checks
# (fused GPU step against MLX's composed ops, every tiny family, the default
# model's greedy text); `bench` times decode on the default model and on
# random-weight Llama 8B/3B/1B shapes (fused and composed), warm prefill with
# MLX's quantized GEMM and with the dequantized GEMM, and the read bandwidth;
# `models` benches the default model and Gemma 3 270M beside llama-bench;
# `lora` times LoRA training (lmlab lora --device gpu) on a random-weight
# Llama 1B shape, 4-bit and bfloat16, beside PyTorch + PEFT on the same shape;
# `host` times decode steps with lmlab bench (pipelined as generation runs
# them) and splits each step's host time (building the graph, handing it to
# the GPU): all layers as one stack (the default), each layer's own step
# (LMLAB_GPU_STACK=0) and composed; on the default model and Gemma 3 270M when
# it was packed. `overlap` times decode with the stack's launches overlapped
# (programmatic dependencies, the default) and with the GEMVs' weight
# prefetch (LMLAB_GPU_PREFETCH=1), each against off (LMLAB_GPU_OVERLAP=0),
# on the two real models and a random 8B shape, then the GEMV launches alone.
# `llama` starts building llama.cpp's llama-bench for sm_90 in the background
# from PARTS_DIR/llama.cpp.tar.xz (llama.cpp's source from the
# llama-cpp-python sdist, trimmed); `models` waits for it (LLAMA_WAIT polls of
# 5 s) and benches the default model, Gemma 3 270M and the 8B shape (a Q4_0
# GGUF for llama.cpp, the MLX folder for lmlab) beside it, at an empty and a
# 512-token context.
# WHAT may list several: "checks models".
set -u
P=$1
WHAT=${2:-all}
cd "$P" && for f in $(awk '{print $2}' MANIFEST); do [ -f "$f" ] || cat "$f".part-* > "$f"; done && sha256sum -c --quiet MANIFEST || exit 1
W=/tmp/lmlab-gpu
mkdir -p $W /tmp/home/models /tmp/m
[ -x $W/lmlab ] || tar xJf "$P/lmlab-cuda.tar.xz" -C $W
M=/tmp/home/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f $M ] || { cp "$P/SmolLM2-135M-Instruct.Q4_1.gguf" $M && touch $M.sha256-ok; }
G=/tmp/home/models/gemma-3-270m-q4_k_m.gguf  # with GEMMA=1 at packing
[ -f $G ] || [ ! -f "$P/gemma-3-270m-q4_k_m.gguf" ] || { cp "$P/gemma-3-270m-q4_k_m.gguf" $G && touch $G.sha256-ok; }
NV=$(find / -xdev \( -path /proc -o -path /sys -o -path /tmp \) -prune -o -type d -path '*site-packages/nvidia/*/lib' -print 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH=$W/lib:$NV${LD_LIBRARY_PATH:-}
export LMLAB_HOME=/tmp/home LMLAB_FIXTURES=$W/fixtures CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "lmlab $(cat $W/COMMIT)"
ldd $W/lmlab | grep -E "not found" && exit 1

# WHAT is one or more of checks, step, bench, models, profile, host, lora, overlap, llama; all = checks bench.
want() { [[ " $WHAT " == *" $1 "* ]] || { [[ " $WHAT " == *" all "* ]] && [[ $1 == checks || $1 == bench ]]; }; }

if want llama; then
  mkdir -p /tmp/ll && rm -f /tmp/ll/build.rc
  tar xJf "$P/llama.cpp.tar.xz" -C /tmp/ll || exit 1
  setsid nohup bash -c 'cd /tmp/ll/llama.cpp && cmake -S . -B /tmp/ll/build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release > /tmp/ll/cfg.log 2>&1 &&
    nice -n 5 cmake --build /tmp/ll/build -j$(nproc) --target llama-bench > /tmp/ll/build.log 2>&1; echo $? > /tmp/ll/build.rc' \
    > /dev/null 2>&1 < /dev/null &
  echo "llama-bench: building in the background (/tmp/ll/build.log)"
fi

if want checks; then
  echo "== first token on a fresh machine (no kernel cache)"
  rm -rf /tmp/mlx
  /usr/bin/time -f "wall %e s" $W/lmlab generate --device gpu -p "What is the capital of France?" --max-tokens 32 --json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(repr(d['text']), d['stats'])"
  echo "== kernels MLX compiled at run time (its PTX cache)"
  ls /tmp/mlx/*/ptx 2>/dev/null | sed -n 's/\.ptx$//p' | sort | head -40
  echo "== first token again, a new process with MLX's PTX cache warm"
  /usr/bin/time -f "wall %e s" $W/lmlab generate --device gpu -p "What is the capital of France?" --max-tokens 32 --json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(repr(d['text']), d['stats'])"
  echo "== core checks on the GPU"
  LOG=${OUT:-/tmp}/gpu-tests.log
  # The fused step's checks in a process of their own: a fault elsewhere (a
  # CUDA error is sticky for the process) does not hide their result.
  # Gemma 3's check needs its file (GEMMA=1 at packing).
  LMLAB_TEST_DEVICE=gpu MLX_ENABLE_TF32=0 $W/lmlab_tests --gtest_filter="*CudaStep*$([ -f $G ] || echo -CudaStep.Gemma3*)" > "$LOG" 2>&1
  echo "lmlab_tests (fused step) exit $?"
  LMLAB_TEST_DEVICE=gpu MLX_ENABLE_TF32=0 $W/lmlab_tests \
    --gtest_filter='Tiny*:Gguf*:ModelDir*:Sampler*:Rope*:StopStrings*:*GpuComposed*:GemmaOracle.MatchesLlamaCpp*-*CudaStep*' >> "$LOG" 2>&1
  echo "lmlab_tests (the rest) exit $?"
  grep -E '^\[ cuda|FAILED|PASSED|Failure|Expected|Which is|actual' "$LOG" | head -60
  echo "== the fused step again without CUDA graphs (stream order only)"
  LMLAB_TEST_DEVICE=gpu MLX_USE_CUDA_GRAPHS=0 $W/lmlab_tests --gtest_filter='CudaStep*' 2>&1 | grep -E '^\[ cuda|FAILED|PASSED' | head -20
  echo "== greedy text, fused and composed"
  for f in "" --no-fused; do
    $W/lmlab generate --device gpu -p "What is the capital of France?" --max-tokens 24 --json $f \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(repr(d['text']))"
  done
fi

if want bench; then
  echo "== read bandwidth"
  python3 - <<'PY'
import torch, json
x = torch.randn(2 * (1 << 30) // 4, device="cuda")
for _ in range(3): x.sum()
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): x.sum()
e.record(); torch.cuda.synchronize()
t = s.elapsed_time(e) / 1e3 / 20
print(json.dumps(dict(read_GBps=round(x.numel() * 4 / t / 1e9, 1))))
PY
  python3 -c "print('The history of science is long. ' * 73, end='')" > /tmp/prompt512.txt
  run() {  # model label args...
    local model=$1 label=$2; shift 2
    for i in $(seq ${RUNS:-3}); do
      $W/lmlab generate --device gpu --model $model --no-chat-template --ignore-eos --max-tokens 128 --json "$@" \
        < /tmp/prompt512.txt | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print('$label', s['prompt_tokens'], round(s['prompt_tps'],1), round(s['generation_tps'],1), round(s['peak_memory_gb'],3))"
    done
  }
  prefill() {  # model label: warm prompt tok/s (lmlab bench), MLX's quantized GEMM vs dequantize + GEMM
    for d in 0 16; do
      LMLAB_GPU_DENSE_ROWS=$d $W/lmlab bench --device gpu --model $1 -p 512,2048 -n 0 -r 3 2>&1 \
        | grep -E "^\| pp" | sed "s/^/$2 dense_rows=$d /"
    done
  }
  echo "== decode (label prompt_tokens prompt_tps gen_tps peak_gb), 3 runs each"
  run $M smollm2-fused
  run $M smollm2-composed --no-fused
  prefill $M smollm2
  for shape in ${SHAPES:-llama1b llama3b llama8b}; do
    [ -f /tmp/m/$shape/config.json ] || python3 $W/bench/random_model.py /tmp/m/$shape $shape $W/tokenizer
    run /tmp/m/$shape $shape-fused
    run /tmp/m/$shape $shape-composed --no-fused
    prefill /tmp/m/$shape $shape
  done
fi

if want models; then
  # The two real models (GEMMA=1 at packing) and the random 8B shape beside
  # llama.cpp's llama-bench (`llama` above), tg128 at an empty and a 512-token
  # context (lmlab bench: after a 16- and a 512-token prompt; llama-bench:
  # -d 0,512), pp512 after warm-up.
  for i in $(seq ${LLAMA_WAIT:-0}); do [ -f /tmp/ll/build.rc ] && break; sleep 5; done
  LLB=/tmp/ll/build/bin/llama-bench
  echo "llama-bench: $([ -x $LLB ] && echo built || echo "missing (build rc $(cat /tmp/ll/build.rc 2>/dev/null))")"
  m8=/tmp/m/llama8b g8=/tmp/m/llama8b-q4_0.gguf
  [ -f $m8/config.json ] || python3 $W/bench/random_model.py $m8 llama8b $W/tokenizer > /dev/null
  [ -f $g8 ] || [ ! -d /tmp/ll/llama.cpp/gguf-py ] || \
    PYTHONPATH=/tmp/ll/llama.cpp/gguf-py python3 $W/bench/random_model.py $g8 llama8b $W/tokenizer > /dev/null
  for pair in "$M $M" "$G $G" "$m8 $g8"; do
    set -- $pair
    [ -e $1 ] || continue
    echo "== $(basename $1): lmlab bench, then llama-bench on $(basename $2) (-fa 1, all layers on the GPU)"
    $W/lmlab bench --device gpu --model $1 -p 16,512 -n 128 -r ${RUNS:-5} 2>&1 | grep -E "^\| (pp|tg)"
    [ -x $LLB ] && [ -f $2 ] && $LLB -m $2 -p 512 -n 128 -d 0,512 -r ${RUNS:-5} -fa 1 -ngl 99 -o md 2>/dev/null | grep -E "^\|"
  done
  [ -f $G ] && $W/lmlab compare --device gpu default gemma3-270m -o ${OUT:-/tmp}/compare-gpu.md > /dev/null 2>&1 \
    && sed -n 1,20p ${OUT:-/tmp}/compare-gpu.md
fi

if want overlap; then
  m8=/tmp/m/llama8b
  [ -f $m8/config.json ] || python3 $W/bench/random_model.py $m8 llama8b $W/tokenizer > /dev/null
  for model in $M $([ -f $G ] && echo $G) $m8; do
    for cfg in X=1 LMLAB_GPU_PREFETCH=1 LMLAB_GPU_OVERLAP=0 LMLAB_GPU_STACK=0; do
      echo "== $(basename $model) $cfg"
      env $cfg $W/lmlab bench --device gpu --model $model -p 16,512 -n 128 -r ${RUNS:-3} | grep -E "^\| tg"
    done
  done
  if [ -x $W/bench/qgemv_bench ]; then
    for v in X=1 QGEMV_OVERLAP=1 "QGEMV_OVERLAP=1 QGEMV_PREFETCH=1" QGEMV_OVERLAP=2 "QGEMV_OVERLAP=2 QGEMV_PREFETCH=1"; do
      echo "== qgemv_bench $v"
      env $v $W/bench/qgemv_bench ${QGEMV_SHAPES:-8b 1b 135m} | grep -vE "grid|checksum"
    done
  fi
fi

if want lora; then
  # Rank 16 on q, k, v, o, gate, up, down of all 16 blocks, batch 4 of 512-token
  # records (2,048 tokens a step), Adam at 1e-5, 40 iterations reported every
  # 10: tokens/s over iterations 11-40 (the first report holds the warm-up).
  python3 $W/bench/lora_gpu.py data /tmp/syn512 $W/tokenizer || exit 1
  keys=self_attn.q_proj,self_attn.k_proj,self_attn.v_proj,self_attn.o_proj,mlp.gate_proj,mlp.up_proj,mlp.down_proj
  for v in "4 " "0 " "4 --grad-checkpoint" "0 --grad-checkpoint"; do
    set -- $v
    m=/tmp/m/llama1b-b$1-bf16
    [ -f $m/config.json ] || python3 $W/bench/random_model.py $m llama1b $W/tokenizer $1 bfloat16 > /dev/null || exit 1
    rm -rf /tmp/ad
    /usr/bin/time -f "wall %e s" $W/lmlab lora --device gpu --model $m --data /tmp/syn512 --train --iters 40 \
      --batch-size 4 --num-layers -1 --rank 16 --lora-scale 20 --lora-keys $keys --learning-rate 1e-5 \
      --steps-per-report 10 --steps-per-eval 1000 --val-batches 0 --save-every 1000 --adapter-path /tmp/ad --seed 0 ${2:-} \
      > /tmp/lora.log 2>&1
    echo "lmlab lora exit $? (bits $1 ${2:-})"; grep -E "wall|[Pp]eak|[Ee]rror" /tmp/lora.log | tail -4
    python3 - /tmp/ad/train_log.csv "llama1b bits=$1 ${2:-}" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["tokens_per_sec"]]
timed = [r for r in rows if int(r["iteration"]) > 10]
sec = sum(10 / float(r["it_per_sec"]) for r in timed)
tok = sum(10 * float(r["tokens_per_sec"]) / float(r["it_per_sec"]) for r in timed)
print(sys.argv[2], "lmlab tokens/s", round(tok / sec, 1), "first report it/s", rows[0]["it_per_sec"],
      "peak GB", max(float(r["peak_memory_gb"]) for r in rows), "losses", [r["train_loss"] for r in rows])
PY
  done
  if [ "${LORA_ANCHORS:-1}" = 1 ]; then  # LORA_ANCHORS=0: lmlab's rows only
    python3 $W/bench/lora_gpu.py peft llama1b
    python3 $W/bench/lora_gpu.py peft llama1b compile
    # mlx_lm.lora on the same models and data, when the mlx and mlx-lm wheels
    # (cp312, the GPU machine's Python) were carried in PARTS_DIR/wheels: they
    # run on the pack's libmlx.so (the same mlx-cuda-13 build) and MLX headers.
    if [ -d "$P/wheels" ] || [ -d /tmp/site/mlx_lm ]; then
      [ -d /tmp/site/mlx_lm ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site "$P"/wheels/*.whl
      mkdir -p /tmp/site/mlx/lib && { [ -f /tmp/site/mlx/lib/libmlx.so ] || cp $W/lib/libmlx.so /tmp/site/mlx/lib/; } && ln -sfn $W/include /tmp/site/mlx/include
      for b in 4 0; do PYTHONPATH=/tmp/site python3 $W/bench/lora_gpu.py mlx /tmp/m/llama1b-b$b-bf16 /tmp/syn512; done
    fi
  fi
fi

if want memory; then
  # lmlab lora's measured peak beside its plan on the random Llama 1B shape
  # (bfloat16, and 4-bit), 512-token records, rank 16 on the seven projections,
  # as the trained blocks and the batch change: what the plan's per-token,
  # per-block and fixed parts come to on a GPU. "nocompile" runs with MLX's
  # compilation off (the gated activation then composed, unfused).
  [ -f /tmp/syn512/train.jsonl ] || python3 $W/bench/lora_gpu.py data /tmp/syn512 $W/tokenizer || exit 1
  keys=self_attn.q_proj,self_attn.k_proj,self_attn.v_proj,self_attn.o_proj,mlp.gate_proj,mlp.up_proj,mlp.down_proj
  mem() {  # bits layers batch [env] [flag]
    local m=/tmp/m/llama1b-b$1-bf16
    [ -f $m/config.json ] || python3 $W/bench/random_model.py $m llama1b $W/tokenizer $1 bfloat16 > /dev/null || exit 1
    rm -rf /tmp/ad
    env ${4:-X=1} $W/lmlab lora --device gpu --model $m --data /tmp/syn512 --train --iters 4 --batch-size $3 \
      --num-layers $2 --rank 16 --lora-scale 20 --lora-keys $keys --learning-rate 1e-5 --steps-per-report 1 \
      --val-batches 0 --save-every 1000 --adapter-path /tmp/ad --seed 0 ${5:-} > /tmp/mem.log 2>&1
    echo "bits $1 layers $2 batch $3 ${4:-} ${5:-}: $(grep -E '^Peak memory' /tmp/mem.log)" \
      "$(grep -E '^Iter 4:' /tmp/mem.log | grep -oE '(Train loss|Tokens\/sec) [0-9.]+' | tr '\n' ' ')"
  }
  mem 0 16 4; mem 0 4 4; mem 0 1 4; mem 0 16 2; mem 0 16 1; mem 0 16 4 X=1 --grad-checkpoint
  mem 4 16 4; mem 4 1 4; mem 4 16 1; mem 4 16 4 X=1 --grad-checkpoint
fi

if want step; then
  # The fused step's checks alone (also the first of `checks`); each run of
  # the tests is cut off after TEST_TIMEOUT seconds (a hung launch shows as
  # the last test started).
  gpu_tests() {
    timeout ${TEST_TIMEOUT:-300} env "$@" LMLAB_TEST_DEVICE=gpu MLX_ENABLE_TF32=0 $W/lmlab_tests --gtest_filter="$F" 2>&1 \
      | grep --line-buffered -E '^\[ (cuda|RUN)|FAILED|PASSED|OK \]|Failure|Expected|Which is|actual'
    echo "lmlab_tests: exit ${PIPESTATUS[0]}"
  }
  F="*CudaStep*$([ -f $G ] || echo -CudaStep.Gemma3*)" gpu_tests X=1
  # The stack's launches not overlapped: the same bits.
  echo "== LMLAB_GPU_OVERLAP=0"
  F='CudaStep.Stack*:CudaStep.DefaultModelDecodesALongContext*' gpu_tests LMLAB_GPU_OVERLAP=0
fi

if want host; then
  for model in $M $([ -f $G ] && echo $G); do
    for cfg in "" "LMLAB_GPU_STACK=0" ${HOST_COMPOSED:-"--no-fused"}; do
      echo "== lmlab bench $(basename $model) ${cfg:-(defaults)}"
      case "$cfg" in --*) env=; flag=$cfg ;; *) env=$cfg; flag= ;; esac
      env $env $W/lmlab bench --device gpu --model $model -p 16,512 -n 128 -r ${RUNS:-5} $flag | grep -E "^\| (tg|pp)"
    done
  done
fi

if want profile; then
  # Per-kernel GPU time of decode steps (Nsight Compute, one metric, clocks
  # as they are) beside the step's wall time with and without CUDA graphs:
  # what the kernels take and what the host adds.
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  python3 -c "print('The history of science is long. ' * 2, end='')" > /tmp/prompt16.txt
  for shape in smollm2 ${SHAPES:-llama8b}; do
    model=$M layers=30
    if [ $shape != smollm2 ]; then
      [ -f /tmp/m/$shape/config.json ] || python3 $W/bench/random_model.py /tmp/m/$shape $shape $W/tokenizer
      model=/tmp/m/$shape layers=$(python3 -c "import json; print(json.load(open('/tmp/m/$shape/config.json'))['num_hidden_layers'])")
    fi
    for g in 1 0; do
      MLX_USE_CUDA_GRAPHS=$g $W/lmlab generate --device gpu --model $model --no-chat-template --ignore-eos --max-tokens 128 --json \
        < /tmp/prompt16.txt | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print('$shape graphs=$g gen_tps', round(s['generation_tps'],1), 'ms/token', round(1e3/s['generation_tps'],3))"
    done
    MLX_USE_CUDA_GRAPHS=0 $NCU --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
      --launch-skip ${SKIP:-2000} --launch-count ${COUNT:-1000} \
      $W/lmlab generate --device gpu --model $model --no-chat-template --ignore-eos --max-tokens 40 < /tmp/prompt16.txt \
      > /tmp/ncu-$shape.csv 2>/tmp/ncu-$shape.err
    cp /tmp/ncu-$shape.csv ${OUT:-/tmp}/ 2>/dev/null
    python3 - /tmp/ncu-$shape.csv $layers $shape <<'PY'
import csv, sys, collections
path, layers, shape = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l for l in open(path) if l.startswith('"')]
t = collections.defaultdict(float); n = collections.Counter()
for r in csv.DictReader(rows):
    if r.get("Metric Name") != "gpu__time_duration.sum": continue
    k = r["Kernel Name"].split("(")[0][:60]
    t[k] += float(r["Metric Value"].replace(",", "")) / 1e3; n[k] += 1
att = sum(c for k, c in n.items() if "lmlab_attention" in k)
tokens = att / layers if att else 0
total = sum(t.values())
print(f"{shape}: {sum(n.values())} kernels, {tokens:.1f} decode steps, kernel time per step {total / max(tokens, 1):.1f} us")
for k in sorted(t, key=t.get, reverse=True)[:16]:
    print(f"  {k:60s} n={n[k]:5d} mean={t[k]/n[k]:8.2f} us  per-step={t[k]/max(tokens,1):8.1f} us")
PY
  done
fi

